"""``posequeue compile``: ``add_command(subparsers)`` adds it to the ``posequeue`` command."""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path

from posequeue.errors import EXIT_FAILED, EXIT_REFUSED

DESCRIPTION = """\
Compile a SavedModel, or each stage of a model spec (runtime "tensorflow"), for Inferentia (inf1)
with tensorflow-neuron: tfn.trace under TensorFlow 2, tfn.saved_model.compile under 1.15.
Writes a new folder OUT with OUT/<stage> (the compiled SavedModels, same serving_default input and
output names), OUT/<name>.toml (a model spec with runtime "neuron", compiled_batch N; put OUT in
POSEQUEUE_MODEL_SPECS) and OUT/compile-report.json. Without tensorflow-neuron everything up to the
compile call is checked, then it stops (exit 2) saying how to install it."""


def add_command(subparsers: argparse._SubParsersAction) -> None:
    """Add ``compile`` to a parser's subcommands (it sets ``run``)."""
    from posequeue.config.catalogue import KEYPOINT_SETS
    from posequeue.neuron.checks import DEFAULT_NO_FUSE

    p = subparsers.add_parser(
        "compile",
        help="compile a SavedModel or a model spec for Inferentia (tensorflow-neuron)",
        description=DESCRIPTION,
    )
    p.add_argument("source", metavar="SPEC_OR_SAVEDMODEL", help="a SavedModel folder or a model spec file")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="folder to create (must not exist)")
    p.add_argument(
        "--batch-size",
        type=int,
        required=True,
        metavar="N",
        help="the compiled batch size: the model then runs batches of exactly N (the "
        "worker pads or cuts batches to fit)",
    )
    p.add_argument(
        "--dynamic-batch",
        action="store_true",
        help="let the model take any multiple of N (the Neuron runtime cuts it into "
        "batches of N and runs them in parallel)",
    )
    p.add_argument(
        "--no-fuse",
        nargs="+",
        action="extend",
        metavar="PATTERN",
        help="keep the ops in name scopes matching PATTERN (a regular expression for a "
        f"whole scope) on the CPU (default: {' '.join(DEFAULT_NO_FUSE)}; giving any "
        "replaces it)",
    )
    p.add_argument(
        "--input-shape",
        action="append",
        default=[],
        metavar="NAME=D0,D1,...",
        help="the full shape of input NAME, batch first (-1 or N), for a model whose "
        "input has unknown dimensions",
    )
    p.add_argument(
        "--name", default="", help="the compiled model's name (default: the source's name + '-neuron')"
    )
    p.add_argument(
        "--keypoints",
        default="coco",
        choices=sorted(KEYPOINT_SETS),
        help="for a SavedModel (no spec to take them from): the keypoint set of its "
        "output 'coords' (default coco)",
    )
    p.set_defaults(run=cmd_compile)


def parse_input_shape(text: str) -> tuple[str, tuple[int, ...]]:
    """``NAME=D0,D1,...`` -> (NAME, dims); the batch (D0) may be -1."""
    from posequeue.neuron.checks import CompileError

    name, sep, dims = text.partition("=")
    try:
        shape = tuple(int(d) for d in dims.split(","))
    except ValueError:
        shape = ()
    batch_ok = bool(shape) and (shape[0] == -1 or shape[0] >= 1)
    if not (sep and name and batch_ok) or any(d < 1 for d in shape[1:]):
        raise CompileError(
            f"--input-shape {text!r}: give NAME=D0,D1,... with whole positive "
            "dimensions, the batch first (-1 for the compiled batch size)"
        )
    return name, shape


def cmd_compile(args: argparse.Namespace) -> int:
    from posequeue.config.specs import SpecError
    from posequeue.neuron.checks import DEFAULT_NO_FUSE, CompileError, Options, prepare, tensorflow_or_refuse
    from posequeue.neuron.compile import NeuronMissing, import_neuron, low_ratio, run
    from posequeue.neuron.savedmodel import SavedModelError
    from posequeue.worker.runtimes import NEURON_INSTALL

    try:
        options = Options(
            batch_size=args.batch_size,
            dynamic_batch=args.dynamic_batch,
            no_fuse=tuple(args.no_fuse or DEFAULT_NO_FUSE),
            input_shapes=dict(parse_input_shape(s) for s in args.input_shape),
            name=args.name,
            keypoints=args.keypoints,
        )
        tf = tensorflow_or_refuse()
        checked = prepare(Path(args.source), Path(args.output), options, tf)
        for job in checked.jobs:
            print(
                f"{job.stage.name}: {job.source}, input {job.input} as {job.shapes[job.input]}, "
                f"{len(job.no_fuse_ops)} ops kept on the CPU",
                file=sys.stderr,
            )
        tfn = import_neuron()
    except (CompileError, SpecError, SavedModelError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except NeuronMissing:
        print(f"error: checked, but not compiled: {NEURON_INSTALL}", file=sys.stderr)
        return EXIT_REFUSED
    try:
        report = run(checked, tf, tfn)
    except Exception as exc:  # the compiler's own failure: its traceback, then which model failed
        traceback.print_exc()
        print(
            f"error: compiling {args.source} failed ({type(exc).__name__}: {exc}); nothing was "
            f"written to {args.output}",
            file=sys.stderr,
        )
        return EXIT_FAILED
    for warning in (*checked.notes, *low_ratio(report)):
        print(f"note: {warning}", file=sys.stderr)
    ratios = {stage["name"]: stage["on_neuron_ratio"] for stage in report["stages"]}
    print(json.dumps({"output": report["output"], "spec": report["spec"], "on_neuron_ratio": ratios}))
    return 0
