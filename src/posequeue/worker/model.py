"""A loaded model stage: runtime plus decoding, loaded once per worker process."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from posequeue.config.models import get_model
from posequeue.config.schemas import Transform
from posequeue.config.settings import get_settings
from posequeue.worker import blazepose
from posequeue.worker.model_files import blazepose_dir
from posequeue.worker.pinning import cpu_threads
from posequeue.worker.runtimes import Runtime, make_runtime


class StageModel:
    """One stage of one model, ready to run batches of uint8 frames."""

    def __init__(self, model: str, stage: str) -> None:
        settings = get_settings()
        self.spec = get_model(model)
        self.stage = self.spec.stage(stage)
        folder = blazepose_dir(settings.cache_dir, settings.model_dir)
        self.runtime: Runtime = make_runtime(self.spec.runtime, folder / self.stage.file,
                                             cpu_threads())  # fmt: skip

    def predict(self, pixels: np.ndarray, transforms: list[Transform]) -> list[list[dict[str, Any]]]:
        outputs = self.runtime.run(blazepose.to_input(pixels))
        return blazepose.decode(outputs, transforms)


@lru_cache(maxsize=4)
def load(model: str, stage: str) -> StageModel:
    """The process's model for a stage: created on first use, then reused for every batch."""
    return StageModel(model, stage)
