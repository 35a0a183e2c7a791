"""Model runtimes behind one small protocol, chosen by the model spec.

``tflite`` (ai-edge-litert) is the CPU default. Runtimes are imported lazily, in the worker's
pool child, never in the parent that forks it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np


class Runtime(Protocol):
    """Runs one model on a float32 batch; returns its outputs by name, batch first."""

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]: ...


class TFLiteRuntime:
    """ai-edge-litert's interpreter. Runs frame by frame: on the CPU batch 1 is as fast as
    larger batches (measured: ~210 frames/s at batch 1, ~180 at batch 8 on 2 cores)."""

    def __init__(self, path: Path, threads: int, outputs: tuple[str, ...] = ()) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=str(path), num_threads=threads)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]["index"]
        # Only the outputs a stage reads are copied out (the landmark model also returns a
        # 256x256 segmentation mask that nobody uses).
        self.outputs = {d["name"]: d["index"] for d in self.interpreter.get_output_details()
                        if not outputs or d["name"] in outputs}  # fmt: skip

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        if len(batch) == 0:
            return {name: np.empty((0,)) for name in self.outputs}
        results: dict[str, list[np.ndarray]] = {name: [] for name in self.outputs}
        for frame in batch:
            self.interpreter.set_tensor(self.input, frame[None])
            self.interpreter.invoke()
            for name, index in self.outputs.items():
                results[name].append(self.interpreter.get_tensor(index)[0].copy())
        return {name: np.stack(values) for name, values in results.items()}


def make_runtime(kind: str, path: Path, threads: int, outputs: tuple[str, ...] = ()) -> Runtime:
    """The runtime for a model spec's ``runtime`` field."""
    if kind == "tflite":
        return TFLiteRuntime(path, threads, outputs)
    raise ValueError(f"unknown runtime {kind!r}; available here: tflite")
