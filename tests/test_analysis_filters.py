"""Gap filling, outlier rejection and the smoothing filters on their own."""

from __future__ import annotations

import numpy as np

from posequeue.analysis.filters import butterworth, hampel, one_euro
from posequeue.analysis.gaps import fill_gaps, fillable


def test_only_short_interior_gaps_are_fillable() -> None:
    """Runs of at most max_gap missing samples between measured ones are filled; longer runs and
    runs at either end are not."""
    missing = np.array([1, 0, 1, 1, 0, 1, 1, 1, 1, 0, 1], dtype=bool)
    assert fillable(missing, 3).tolist() == [0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0]
    assert fillable(missing, 4).tolist() == [0, 0, 1, 1, 0, 1, 1, 1, 1, 0, 0]


def test_fill_gaps_interpolates_in_time() -> None:
    """A filled sample lies on the motion (linear motion is reproduced exactly), by timestamps."""
    t = np.array([0.0, 0.1, 0.15, 0.3, 0.4])
    xy = np.stack([t * 10, t * -5], axis=1)[:, None, :].repeat(2, axis=1)
    xy[2, 0] = np.nan
    out, filled = fill_gaps(t, xy, 10)
    assert filled[:, 0].tolist() == [False, False, True, False, False] and not filled[:, 1].any()
    np.testing.assert_allclose(out[2, 0], [1.5, -0.75])


def test_hampel_rejects_spikes_not_noise() -> None:
    """Spikes of 30 noise deviations are rejected; plain noise on a moving point mostly is not."""
    rng = np.random.default_rng(1)
    t = np.arange(600) / 30
    xy = np.stack([200 + 100 * np.cos(2 * t), 200 + 100 * np.sin(2 * t)], axis=1)[:, None, :]
    xy = xy + rng.normal(0, 1.0, xy.shape)
    spikes = [5, 0, 100, 333, 599]
    xy[spikes, 0, 0] += 30
    out, rejected = hampel(xy)
    assert set(spikes) <= set(np.flatnonzero(rejected[:, 0]))
    assert rejected.sum() <= len(spikes) + 12  # 2% false rejections at most (then interpolated)
    assert np.isnan(out[spikes, 0]).all()


def test_butterworth_handles_variable_frame_rate_and_gaps() -> None:
    """Irregular timestamps and a gap: a slow sine passes unchanged, fast noise is removed, and
    the gap stays a gap."""
    rng = np.random.default_rng(2)
    t = np.cumsum(rng.uniform(0.5, 1.5, 400) / 30)
    clean = 50 * np.sin(2 * np.pi * 1.0 * t)
    x = clean + rng.normal(0, 2, t.size)
    x[150:170] = np.nan
    y = butterworth(t, x[:, None], cutoff=6.0)[:, 0]
    assert np.isnan(y[150:170]).all() and not np.isnan(y[:150]).any()
    inner = np.r_[10:140, 180:390]
    assert np.sqrt(np.mean((y[inner] - clean[inner]) ** 2)) < 0.75 * np.sqrt(
        np.mean((x[inner] - clean[inner]) ** 2)
    )


def test_one_euro_restarts_after_a_gap() -> None:
    """One-Euro follows a step after a missing sample at once instead of easing from the old value."""
    t = np.arange(10) / 30
    x = np.array([0.0, 0, 0, 0, np.nan, 100, 100, 100, 100, 100])[:, None]
    y = one_euro(t, x)[:, 0]
    assert np.isnan(y[4]) and y[5] == 100


def test_every_filter_name_has_a_smoother() -> None:
    """The parameter check (which imports no scipy) and the filters agree on the names."""
    from posequeue.analysis.filters import SMOOTHERS
    from posequeue.analysis.params import FILTERS

    assert tuple(SMOOTHERS) == FILTERS
