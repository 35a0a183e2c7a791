"""Outlier rejection and smoothing of keypoint trajectories, NaN-aware and timestamp-aware.

- ``hampel``: a sample further than ``n_sigmas`` noise scales (MAD of residuals) from the median
  of its neighbours (``half_window`` measured samples either side) is rejected; x and y together.
- ``butterworth``: zero-phase low-pass, a 2nd-order design run forwards and backwards
  (``sosfiltfilt``), i.e. 4th order overall, the convention of Pose2Sim and Sports2D.
- ``one_euro``: Casiez et al.'s One-Euro filter (adaptive cutoff, causal, lags a little).
- ``none``: the (gap-filled) samples as they are.

Each contiguous run of samples is filtered on its own: a filter never bridges a gap it was not
allowed to fill. Variable frame rate: the Butterworth filter needs uniform samples, so a run whose
intervals vary by more than 1% is interpolated onto a uniform grid at the track's median interval,
filtered there and interpolated back at its own timestamps; One-Euro uses each sample's own
interval directly.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.ndimage import median_filter
from scipy.signal import butter, sosfiltfilt

from posequeue.analysis.gaps import runs

MAD_SCALE = 1.4826  # MAD to standard deviation for normally distributed noise
UNIFORM_TOLERANCE = 0.01


def hampel(
    xy: np.ndarray, half_window: int = 3, n_sigmas: float = 3.0, scale_window: int = 15, floor_px: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """Reject outliers of a (frames, keypoints, 2) array. Windows count measured samples (missing
    ones are skipped), so a gap does not blind them.

    The median is local (``half_window`` samples either side, short enough to follow a limb's
    turn). The noise scale is not the window's MAD: over 7 samples that estimate is too low (the
    sample itself is often the median) and rejects good samples by the dozen; it is the MAD of the
    first differences, less their local median (the velocity), over ``scale_window`` samples either
    side, divided by sqrt(2), with a floor of ``floor_px``.

    Returns:
        A copy with rejected samples set to NaN, and the (frames, keypoints) mask of them.
    """
    out = xy.copy()
    rejected = np.zeros(xy.shape[:2], dtype=bool)
    size = 2 * half_window + 1
    for k in range(xy.shape[1]):
        ok = ~(np.isnan(xy[:, k, 0]) | np.isnan(xy[:, k, 1]))
        if ok.sum() < size + 1:
            continue
        values = xy[ok, k, :]
        # "mirror" counts an edge sample once: "nearest" would let an outlier at the edge vote for itself
        dev = np.abs(values - median_filter(values, size=(size, 1), mode="mirror"))
        sigma = np.maximum(_noise(values, min(2 * scale_window + 1, 2 * values.shape[0] - 3)), floor_px)
        bad = (dev > n_sigmas * sigma).any(axis=1)
        idx = np.flatnonzero(ok)[bad]
        out[idx, k, :] = np.nan
        rejected[idx, k] = True
    return out, rejected


def _noise(values: np.ndarray, size: int) -> np.ndarray:
    """Local noise standard deviation of each column, robust to motion and to outliers."""
    d = np.diff(values, axis=0)
    d = np.concatenate([d[:1], d])
    spread = np.abs(d - median_filter(d, size=(size, 1), mode="mirror"))
    return MAD_SCALE * median_filter(spread, size=(size, 1), mode="mirror") / np.sqrt(2)


def nyquist(t: np.ndarray) -> float:
    """Half the sampling rate of a track, from its median frame interval."""
    dt = np.diff(t)
    dt = dt[dt > 0]
    return 0.5 / float(np.median(dt)) if dt.size else float("inf")


def butterworth(t: np.ndarray, x: np.ndarray, cutoff: float = 6.0, order: int = 4) -> np.ndarray:
    """Zero-phase low-pass of each column of ``x`` (frames, ...) along time.

    Raises:
        ValueError: the cutoff is not below the Nyquist frequency of the timestamps.
    """
    flat = x.reshape(x.shape[0], -1)
    out = flat.copy()
    if flat.shape[0] < 3:
        return out.reshape(x.shape)
    nyq = nyquist(t)
    if not 0 < cutoff < nyq:
        raise ValueError(f"cutoff {cutoff} Hz must be between 0 and the Nyquist frequency {nyq:.3g} Hz")
    step = 0.5 / nyq
    sos = butter(max(1, order // 2), cutoff, fs=2 * nyq, output="sos")
    for j in range(flat.shape[1]):
        starts, ends = runs(~np.isnan(flat[:, j]))
        for s, e in zip(starts, ends, strict=True):
            if e - s >= 3:
                out[s:e, j] = _filter_run(sos, t[s:e], flat[s:e, j], step)
    return out.reshape(x.shape)


def _filter_run(sos: np.ndarray, t: np.ndarray, v: np.ndarray, step: float) -> np.ndarray:
    dt = np.diff(t)
    if np.abs(dt - step).max() <= UNIFORM_TOLERANCE * step:
        return sosfiltfilt(sos, v, padlen=min(v.size - 1, 3 * (2 * sos.shape[0] + 1)))
    grid = np.arange(t[0], t[-1] + step / 2, step)
    if grid.size < 3:
        return v
    smooth = sosfiltfilt(sos, np.interp(grid, t, v), padlen=min(grid.size - 1, 3 * (2 * sos.shape[0] + 1)))
    return np.interp(t, grid, smooth)


def one_euro(
    t: np.ndarray, x: np.ndarray, min_cutoff: float = 1.0, beta: float = 0.01, d_cutoff: float = 1.0
) -> np.ndarray:
    """One-Euro filter of each column of ``x`` (frames, ...); a missing sample restarts the filter."""
    flat = x.reshape(x.shape[0], -1)
    out = np.full_like(flat, np.nan)
    prev = np.full(flat.shape[1], np.nan)
    dprev = np.zeros(flat.shape[1])
    for i in range(flat.shape[0]):
        v = flat[i]
        dt = t[i] - t[i - 1] if i else 0.0
        fresh = np.isnan(prev)
        if dt <= 0:
            out[i] = np.where(fresh, v, prev)
            prev = np.where(np.isnan(v), np.nan, out[i])
            continue
        dx = np.where(fresh, 0.0, (v - prev) / dt)
        dprev = dprev + _alpha(d_cutoff, dt) * (dx - dprev)
        cutoff = min_cutoff + beta * np.abs(dprev)
        est = prev + _alpha(cutoff, dt) * (v - prev)
        out[i] = np.where(fresh, v, est)
        dprev = np.where(fresh, 0.0, dprev)
        prev = out[i]  # NaN where the sample is missing: the next one restarts
    return out.reshape(x.shape)


def _alpha(cutoff: float | np.ndarray, dt: float) -> np.ndarray:
    tau = 1.0 / (2 * np.pi * np.asarray(cutoff))
    return 1.0 / (1.0 + tau / dt)


SMOOTHERS: dict[str, Callable[..., np.ndarray]] = {
    "butterworth": butterworth,
    "one-euro": one_euro,
    "none": lambda t, x, **_: x.copy(),
}
