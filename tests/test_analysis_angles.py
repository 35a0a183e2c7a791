"""Angles from synthetic people with known motion: Sports2D's definitions, continuity through
±180 degrees, and accuracy after outlier rejection, gap filling and filtering."""

from __future__ import annotations

import numpy as np
import pytest
from synthetic_poses import KP, poses_document, rotating_arm, standing

from posequeue.analysis.angles import ANGLE_NAMES
from posequeue.analysis.params import Params
from posequeue.analysis.pipeline import analyze
from posequeue.analysis.tracks import FILLED, MISSING, REJECTED
from posequeue.errors import AnalysisError


def _error(series: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Absolute error where measured, the series taken on the truth's branch: a rotation of
    several turns is continuous, and its median is put in (-180, 180], so the two may differ by
    whole turns (one constant offset for the whole series, never turns between samples)."""
    ok = ~np.isnan(series)
    turns = np.round(np.median(series[ok] - truth[ok]) / 360)
    return np.abs(series[ok] - 360 * turns - truth[ok])


@pytest.mark.parametrize("jitter_t", [False, True], ids=["constant-fps", "variable-fps"])
def test_rotating_chain_is_accurate_and_continuous(jitter_t: bool) -> None:
    """A two-segment chain turning through ±180 degrees several times, with noise, gaps and
    outliers: filtered angles are within 1 degree (median) of the truth and never jump."""
    poses, truth = rotating_arm(jitter_t=jitter_t)
    result = analyze(poses).tracks[0]
    for name in ("right_elbow", "right_arm", "right_forearm"):
        series = result.angles[name]
        assert np.median(_error(series.filtered, truth[name])) <= 1.0, name
        steps = np.abs(np.diff(series.filtered))
        assert np.nanmax(steps) < 30, f"{name} jumps by {np.nanmax(steps):.1f} degrees"
        assert np.nanmax(series.filtered) - np.nanmin(series.filtered) > 360, "did not pass ±180"
        # raw angles too are continuous where measured (no 360 wraps)
        assert np.median(_error(series.raw, truth[name])) <= 3.0, name


def test_filtering_beats_raw() -> None:
    """The filtered elbow angle is closer to the truth than the raw one (the filter does its job:
    at 6 Hz on 30 fps, white noise keeps sqrt(6/15) = 63% of its amplitude)."""
    poses, truth = rotating_arm(noise_px=3.0)
    series = analyze(poses).tracks[0].angles["right_elbow"]
    raw, filtered = _error(series.raw, truth["right_elbow"]), _error(series.filtered, truth["right_elbow"])
    assert np.median(filtered) < 0.75 * np.median(raw)


def test_flags_mark_missing_filled_and_rejected() -> None:
    """Short gaps are filled and flagged, the 1-second gap stays missing, outliers are flagged."""
    poses, truth = rotating_arm()
    result = analyze(poses).tracks[0]
    wrist, elbow = result.flags[:, KP["right_wrist"]], result.flags[:, KP["right_elbow"]]
    assert (wrist & FILLED).any() and (wrist & REJECTED).sum() >= 3
    n = truth["t"].size
    assert (elbow[n // 2 : n // 2 + 30] & MISSING).all()
    assert np.isnan(result.smooth_xy[n // 2 + 5 : n // 2 + 25, KP["right_elbow"]]).all()
    series = result.angles["right_elbow"]
    assert np.isnan(series.filtered[n // 2 + 5 : n // 2 + 25]).all()
    assert (series.flags[n // 2 : n // 2 + 30] & MISSING).all()


def test_standing_posture_matches_sports2d() -> None:
    """A person standing straight, facing right: joint angles near 0, segments as Sports2D gives
    them (shank and thigh pointing down: -90; forearm hanging: -90), whichever way they face."""
    n = 40
    xy = standing(n)
    mirrored = xy.copy()
    mirrored[..., 0] = 1280 - mirrored[..., 0]  # the same person facing left
    for positions in (xy, mirrored):
        angles = analyze(poses_document(positions[:, None], np.arange(n) / 30)).tracks[0].angles
        get = {name: float(np.median(s.filtered)) for name, s in angles.items()}
        for joint in ("right_knee", "left_knee", "right_elbow", "right_shoulder"):
            assert abs(get[joint]) < 1.0, (joint, get[joint])
        for joint in ("right_hip", "left_hip", "right_ankle", "left_ankle"):
            assert abs(get[joint]) < 1.0, (joint, get[joint])
        for segment in ("right_shank", "left_thigh", "right_arm", "right_forearm"):
            assert abs(get[segment] + 90) < 1, (segment, get[segment])  # pointing down
        assert abs(get["trunk"] - 90) < 1  # from hips up to the shoulders
        assert abs(get["right_foot"]) < 3  # heel to toe, near horizontal
    assert set(angles) == set(ANGLE_NAMES)


def test_knee_flexion_is_positive() -> None:
    """Bending the knee (ankle behind, facing right) gives a positive knee flexion of the bend."""
    n = 30
    xy = standing(n)
    bend = np.radians(60)
    knee = xy[0, KP["right_knee"]]
    xy[:, KP["right_ankle"]] = knee + 120 * np.array([-np.sin(bend), np.cos(bend)])
    angles = analyze(poses_document(xy[:, None], np.arange(n) / 30)).tracks[0].angles
    assert abs(np.median(angles["right_knee"].filtered) - 60) < 0.5


def test_explicit_cutoff_above_nyquist_is_refused() -> None:
    """--cutoff at or above half the frame rate is an error naming the limit; the default adapts."""
    poses, _ = rotating_arm(seconds=2, fps=10, gaps=False, outliers=False)
    with pytest.raises(AnalysisError, match="Nyquist frequency 5 Hz"):
        analyze(poses, Params(cutoff=6.0))
    result = analyze(poses)
    assert result.tracks[0].cutoff == 4.0 and "cutoff lowered" in result.notes[0]


@pytest.mark.parametrize("name", ["one-euro", "none"])
def test_other_filters_follow_the_motion(name: str) -> None:
    """One-Euro and no filter still give continuous angles near the truth."""
    poses, truth = rotating_arm(outliers=False)
    series = analyze(poses, Params(filter=name)).tracks[0].angles["right_elbow"]
    assert np.median(_error(series.filtered, truth["right_elbow"])) <= 3.0
    assert np.nanmax(np.abs(np.diff(series.filtered))) < 30


def test_track_ids_from_the_contract() -> None:
    """People with a track_id are analysed per track, longest-present first."""
    n = 20
    xy = np.stack([standing(n), standing(n) + 100], axis=1)
    xy[:5, 1] = np.nan  # track 7 appears later
    result = analyze(poses_document(xy, np.arange(n) / 30, tracks=[3, 7]))
    assert [tr.track.track_id for tr in result.tracks] == [3, 7]
    assert result.tracks[1].track.frames[0] == 5


def test_a_jittery_foot_does_not_flip_angles() -> None:
    """Sports2D mirrors a person facing left; a foot whose toe slips behind the heel for a few
    frames must not mirror those frames (the angle would flip), only a sustained turn does."""
    n = 90
    xy = standing(n)
    knee = xy[0, KP["right_knee"]]
    xy[:, KP["right_ankle"]] = knee + 120 * np.array([-np.sin(np.radians(60)), np.cos(np.radians(60))])
    jitter = np.concatenate([np.arange(s, s + 5) for s in (20, 60, 75)])  # 5-frame slips
    for side in ("left", "right"):
        toe, heel = KP[f"{side}_foot_index"], KP[f"{side}_heel"]
        xy[jitter, toe, 0], xy[jitter, heel, 0] = xy[jitter, heel, 0], xy[jitter, toe, 0].copy()
    turned = xy[n // 2 :]  # then the person turns round for good: mirrored about their hips
    turned[..., 0] = 2 * xy[0, KP["right_hip"], 0] - turned[..., 0]
    series = analyze(poses_document(xy[:, None], np.arange(n) / 30)).tracks[0].angles["right_knee"]
    assert np.nanmax(np.abs(series.raw - 60)) < 0.5
    steady = np.r_[: n // 2 - 6, n // 2 + 6 : n]  # the synthetic turn is a jump: the filter smears it
    assert np.nanmax(np.abs(series.filtered[steady] - 60)) < 1.5
