"""On PYTHONPATH for worker processes: their model runs "off the host", as on an accelerator.

posequeue's workers on inf1 hand each batch to a NeuronCore and wait without using the host's
CPU; here the model shares the CPU with the host work, so a CPU run cannot show how well a
worker keeps an accelerator fed. This stand-in can (benchmarks only, never installed):

    POSEQUEUE_BENCH_OFFHOST=record:DIR  the real runtime runs; each call's outputs and seconds
                                        are saved under DIR, keyed by the input batch
    POSEQUEUE_BENCH_OFFHOST=replay:DIR  each call sleeps the recorded seconds (no CPU, the GIL
                                        released, as a NeuronCore call) and returns the recorded
                                        outputs; the same video gives the same batches
    POSEQUEUE_BENCH_OFFHOST=loop:DIR    as replay, for any video: a batch not recorded is
                                        answered by a recorded call of the same input shape
                                        (or a larger batch, cut to size, its seconds scaled by
                                        the frames), so one short recording serves any size
                                        and length (benchmarks/scale.py)

Everything else in the worker is real: Redis, Celery, pre- and post-processing, the store.
"""

import os

_MODE = os.environ.get("POSEQUEUE_BENCH_OFFHOST", "")

if _MODE:
    import hashlib
    import time
    from pathlib import Path

    import numpy as np

    from posequeue.worker import runtimes

    _how, _, _folder = _MODE.partition(":")
    _real = runtimes.make_runtime

    def _key(batch: np.ndarray) -> str:
        sample = np.ascontiguousarray(batch.reshape(-1)[::97])  # cheap and enough to tell batches apart
        return hashlib.blake2b(sample.tobytes() + str(batch.shape).encode(), digest_size=16).hexdigest()

    class Recorder:
        def __init__(self, runtime: object, folder: Path) -> None:
            self.runtime, self.folder = runtime, folder
            folder.mkdir(parents=True, exist_ok=True)

        def run(self, batch: np.ndarray) -> dict:
            started = time.perf_counter()
            out = self.runtime.run(batch)
            seconds = time.perf_counter() - started
            np.savez(self.folder / f"{_key(batch)}.npz", __seconds__=seconds, **out)
            return out

    class Replayer:
        def __init__(self, folder: Path) -> None:  # all in memory first: no file reads per call
            self.calls = {}
            for path in folder.glob("*.npz"):
                with np.load(path) as data:
                    self.calls[path.stem] = {k: data[k] for k in data.files}

        def run(self, batch: np.ndarray) -> dict:
            call = self.calls.get(_key(batch)) if _how == "replay" else None
            if call is None and _how == "loop":
                return self.any_call(batch)
            if call is None:
                raise KeyError(f"no recorded call for this batch {batch.shape} (record it first)")
            time.sleep(float(call["__seconds__"]))
            return {k: v for k, v in call.items() if k != "__seconds__"}

        def any_call(self, batch: np.ndarray) -> dict:
            n = len(batch)
            fits = [c for c in self.calls.values() if _batch_of(c) >= n]
            call = min(fits, key=_batch_of) if fits else max(self.calls.values(), key=_batch_of)
            have = _batch_of(call)
            time.sleep(float(call["__seconds__"]) * n / have)
            return {k: np.resize(v, (n, *v.shape[1:])) for k, v in call.items() if k != "__seconds__"}

    def _batch_of(call: dict) -> int:
        return min(len(v) for k, v in call.items() if k != "__seconds__")

    def make_runtime(kind, path, *args, **kwargs):  # type: ignore[no-untyped-def]
        folder = Path(_folder) / Path(path).stem
        if _how in ("replay", "loop"):
            return Replayer(folder)
        return Recorder(_real(kind, path, *args, **kwargs), folder)

    runtimes.make_runtime = make_runtime
