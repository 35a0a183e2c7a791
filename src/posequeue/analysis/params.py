"""The analysis's parameters: defaults, validation, and the JSON form recorded with the outputs."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from posequeue.errors import AnalysisError

DEFAULT_CUTOFF = 6.0
FILTERS = ("butterworth", "one-euro", "none")  # filters.SMOOTHERS' keys; no scipy import here


@dataclass(frozen=True)
class Params:
    """What ``posequeue analyze`` and ``submit`` accept (the CLI's option names in brackets).

    ``cutoff`` None means the 6 Hz default, lowered to 80% of the Nyquist frequency for videos
    under 15 fps (recorded in the notes); a cutoff given explicitly must be below Nyquist.
    """

    max_gap: int = 10  # [--max-gap] frames; 0 fills nothing
    min_visibility: float = 0.5  # [--min-visibility] keypoints under it count as missing
    outliers: bool = True  # [--no-outliers] Hampel rejection
    hampel_window: int = 3  # [--hampel-window] measured samples either side
    hampel_sigmas: float = 3.0  # [--hampel-sigmas]
    filter: str = "butterworth"  # [--filter] butterworth | one-euro | none
    cutoff: float | None = None  # [--cutoff] Hz, Butterworth
    order: int = 4  # [--order] overall order of the zero-phase Butterworth (even)
    one_euro_min_cutoff: float = 1.0  # [--one-euro-min-cutoff] Hz
    one_euro_beta: float = 0.01  # [--one-euro-beta] per px/s
    flip_left_right: bool = True  # [--no-flip] Sports2D's mirroring of people facing left
    person_height: float | None = None  # [--person-height] metres
    px_per_m: float | None = None  # [--px-per-m]
    overlay: bool = True  # [--no-overlay]

    def __post_init__(self) -> None:
        if self.filter not in FILTERS:
            raise AnalysisError(f"filter {self.filter!r} unknown: use one of {', '.join(FILTERS)}")
        checks = [
            ("max_gap", self.max_gap >= 0, "0 or more frames"),
            ("min_visibility", 0 <= self.min_visibility <= 1, "between 0 and 1"),
            ("hampel_window", self.hampel_window >= 1, "1 or more samples"),
            ("hampel_sigmas", self.hampel_sigmas > 0, "above 0"),
            ("cutoff", self.cutoff is None or self.cutoff > 0, "above 0 Hz"),
            ("order", self.order >= 2 and self.order % 2 == 0, "an even number, 2 or more"),
            ("one_euro_min_cutoff", self.one_euro_min_cutoff > 0, "above 0 Hz"),
            ("one_euro_beta", self.one_euro_beta >= 0, "0 or more"),
            (
                "person_height",
                self.person_height is None or 0.3 < self.person_height < 3,
                "in metres (0.3-3)",
            ),
            ("px_per_m", self.px_per_m is None or self.px_per_m > 0, "above 0"),
        ]
        for name, ok, want in checks:
            if not ok:
                raise AnalysisError(f"{name} = {getattr(self, name)!r}: must be {want}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Params:
        """From a JSON dict; unknown keys are an error naming them."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise AnalysisError(f"unknown analysis parameters {sorted(unknown)}: known are {sorted(known)}")
        return cls(**data)
