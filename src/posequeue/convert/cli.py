"""``posequeue convert blazepose -o DIR [--check]``: the bundled BlazePose models as TensorFlow
SavedModels plus the model spec that runs them (``add_command(subparsers)`` adds it to the
``posequeue`` command)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from posequeue.errors import EXIT_FAILED, EXIT_REFUSED

MODELS = ("blazepose",)


def add_command(subparsers: argparse._SubParsersAction) -> None:
    """Add ``convert`` to a parser's subcommands (it sets ``run``)."""
    p = subparsers.add_parser(
        "convert",
        help="convert the bundled TFLite models to TensorFlow SavedModels",
        description="Rebuild the bundled BlazePose models (pose_detection.tflite, "
        "pose_landmark_full.tflite) as TensorFlow SavedModels in DIR/detector and DIR/landmarks "
        "(float32, NHWC, any batch size; signature keys are the TFLite tensor names) and write "
        "DIR/blazepose-tf.toml, a model spec for the tensorflow runtime. Needs TensorFlow 2.x "
        "(tensorflow-cpu==2.10.1 on Python 3.10 for tensorflow-neuron).",
    )
    p.add_argument("model", choices=MODELS, help="model to convert")
    p.add_argument(
        "-o",
        "--output",
        required=True,
        type=Path,
        metavar="DIR",
        help="folder for the SavedModels and the spec (created if missing)",
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="then run both runtimes on frames of --video and print the largest "
        "differences as JSON (exit 1 if landmark x, y differ by more than 0.01 px)",
    )
    p.add_argument(
        "--video",
        type=Path,
        default=Path("samples") / "astronaut.mp4",
        help="video with a person for --check (default: samples/astronaut.mp4)",
    )
    p.set_defaults(run=cmd_convert)


def cmd_convert(args: argparse.Namespace) -> int:
    from posequeue.config.settings import get_settings
    from posequeue.convert import ConvertError
    from posequeue.convert.blazepose import SPEC_FILE, convert
    from posequeue.worker.model_cache import blazepose_dir

    settings = get_settings()
    model_dir = blazepose_dir(settings.cache_dir, settings.model_dir)
    try:
        converted = convert(model_dir, args.output)
        for c in converted:
            print(f"{c.stage.name}: {c.stage.file} -> {c.folder} ({c.bytes / 1e6:.1f} MB, {c.seconds:.1f} s)")
        print(f"spec: {args.output / SPEC_FILE} (posequeue submit --model blazepose-tf)")
        if not args.check:
            return 0
        from posequeue.convert.parity import figures

        report = figures(model_dir, args.output, args.video)
    except ConvertError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    report["convert_seconds"] = {c.stage.name: round(c.seconds, 2) for c in converted}
    report["savedmodel_bytes"] = {c.stage.name: c.bytes for c in converted}
    print(json.dumps(report))
    return 0 if report["ok"] else EXIT_FAILED
