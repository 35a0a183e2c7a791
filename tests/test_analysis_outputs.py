"""The analysis's files from a synthetic job: CSV and JSON contents, OpenSim files read back by a
strict parser of their formats, plots, and the report opened in a real headless browser."""

from __future__ import annotations

import csv
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import CHROMIUM, CHROMIUM_ARGS
from synthetic_poses import rotating_arm

from posequeue.analysis.outputs import write_outputs
from posequeue.analysis.params import Params
from posequeue.analysis.pipeline import analyze


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, dict[str, Path], dict[str, np.ndarray]]:
    poses, truth = rotating_arm(seconds=4)
    analysis = analyze(poses, Params(person_height=1.75))
    return analysis, write_outputs(analysis, tmp_path_factory.mktemp("analysis")), truth


def parse_trc(path: Path) -> dict[str, Any]:
    """A strict reader of OpenSim's .trc (PathFileType 4): header keys and values, marker names,
    the X/Y/Z sub-header, and one row of 2 + 3 * markers numbers per frame, numbered from 1."""
    lines = path.read_text().split("\n")
    assert lines[0].split("\t")[:3] == ["PathFileType", "4", "(X/Y/Z)"]
    keys, values = lines[1].split("\t"), lines[2].split("\t")
    assert keys == [
        "DataRate",
        "CameraRate",
        "NumFrames",
        "NumMarkers",
        "Units",
        "OrigDataRate",
        "OrigDataStartFrame",
        "OrigNumFrames",
    ]
    head = dict(zip(keys, values, strict=True))
    n, k = int(head["NumFrames"]), int(head["NumMarkers"])
    names = lines[3].split("\t")
    assert names[:2] == ["Frame#", "Time"]
    markers = [m for m in names[2:] if m]
    assert len(markers) == k and names[2:] == [x for m in markers for x in (m, "", "")]
    assert lines[4].split("\t") == ["", ""] + [f"{a}{i}" for i in range(1, k + 1) for a in "XYZ"]
    assert lines[5] == ""
    rows = [line.split("\t") for line in lines[6:] if line]
    assert len(rows) == n and all(len(r) == 2 + 3 * k for r in rows)
    assert [int(r[0]) for r in rows] == list(range(1, n + 1))
    data = np.array(rows, dtype=float)
    return {"head": head, "markers": markers, "time": data[:, 1], "xyz": data[:, 2:].reshape(n, k, 3)}


def parse_mot(path: Path) -> dict[str, Any]:
    """A strict reader of OpenSim's .mot: name line, key=value lines up to endheader, with nRows
    and nColumns matching the table that follows, a time column first and increasing."""
    lines = path.read_text().rstrip("\n").split("\n")
    end = lines.index("endheader")
    meta = dict(line.split("=", 1) for line in lines[1:end] if "=" in line)
    assert meta["version"] == "1" and meta["inDegrees"] == "yes"
    columns = lines[end + 1].split("\t")
    rows = [line.split("\t") for line in lines[end + 2 :]]
    assert columns[0] == "time" and len(columns) == int(meta["nColumns"]) and len(rows) == int(meta["nRows"])
    data = np.array(rows, dtype=float)
    assert (np.diff(data[:, 0]) > 0).all()
    return {"columns": columns, "data": data}


def test_angles_csv_has_every_track_angle_and_frame(written: Any) -> None:
    """angles.csv: one row per (track, angle, frame), raw and filtered as in memory, flags letters."""
    analysis, files, _ = written
    with files["angles.csv"].open() as fh:
        rows = list(csv.DictReader(fh))
    tr = analysis.tracks[0]
    assert len(rows) == len(tr.angles) * tr.track.t.size
    assert list(rows[0]) == ["frame", "t", "track", "angle", "raw", "filtered", "velocity", "flags"]
    elbow = [r for r in rows if r["angle"] == "right_elbow"]
    got = np.array([float(r["filtered"]) if r["filtered"] else np.nan for r in elbow])
    np.testing.assert_allclose(got, tr.angles["right_elbow"].filtered, atol=6e-4)
    assert {r["flags"] for r in rows} >= {"", "mf"} and all(set(r["flags"]) <= set("mof") for r in rows)


def test_analysis_json_summarises_each_track(written: Any) -> None:
    """analysis.json: parameters, versions, definitions and a range of motion per angle."""
    analysis, files, truth = written
    doc = json.loads(files["analysis.json"].read_text())
    assert doc["parameters"]["person_height"] == 1.75 and doc["versions"]["scipy"]
    assert doc["definitions"]["right_knee"] == {
        "points": ["RAnkle", "RKnee", "RHip"],
        "offset": -180,
        "scale": 1,
        "kind": "joint",
    }
    rom = doc["tracks"][0]["angles"]["right_elbow"]
    assert abs(rom["min"] - truth["right_elbow"].min()) < 6 and abs(rom["t_min"] - truth["t"][-1]) < 0.2
    assert rom["p5"] < rom["mean"] < rom["p95"] and rom["filled"] > 0
    assert 150 < doc["tracks"][0]["px_per_m"] < 500  # the synthetic person is ~540 px tall
    assert "markers.trc" in doc["outputs"] and "report.html" in doc["outputs"]


def test_opensim_files_read_back(written: Any) -> None:
    """markers.trc and angles.mot parse strictly; markers are in metres with y up; the .mot
    holds the filtered angles."""
    analysis, files, _ = written
    tr = analysis.tracks[0]
    trc = parse_trc(files["markers.trc"])
    assert trc["head"]["Units"] == "m" and trc["markers"] == analysis.keypoints
    nose = analysis.keypoints.index("nose")
    expected_y = (720 - tr.smooth_xy[:, nose, 1]) / tr.px_per_m
    np.testing.assert_allclose(trc["xyz"][:, nose, 1], expected_y, atol=1e-4)
    np.testing.assert_allclose(trc["time"], tr.track.t, atol=1e-5)
    mot = parse_mot(files["angles.mot"])
    col = mot["columns"].index("right_elbow")
    np.testing.assert_allclose(mot["data"][:, col], tr.angles["right_elbow"].filtered, atol=1e-3)


def test_plots_are_pngs(written: Any) -> None:
    """One PNG per angle of each track, left and right together (26 angles, 15 plots)."""
    analysis, files, _ = written
    plots = [p for name, p in files.items() if name.startswith("plots/")]
    assert len(analysis.tracks[0].angles) == 26 and len(plots) == 15
    assert "plots/track0_knee.png" in files and "plots/track0_trunk.png" in files
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in plots)


@pytest.mark.skipif(CHROMIUM is None and os.environ.get("CI") != "true", reason="chromium not installed")
def test_report_renders_in_headless_chromium(written: Any, tmp_path: Path) -> None:
    """report.html opens offline in Debian's chromium: the screenshot shows the embedded plots'
    left-side blue, so the page and its images rendered."""
    assert CHROMIUM, "chromium is required in CI (apt-get install -y chromium)"
    _, files, _ = written
    shot = tmp_path / "report.png"
    screenshot(files["report.html"], shot, tmp_path / "profile")
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3).astype(int)
    blue = np.abs(pixels - [0x00, 0x72, 0xB2]).sum(axis=1) < 40
    assert blue.sum() > 500, "no plot drawn in the screenshot"
    assert "Range of motion" in files["report.html"].read_text()


def screenshot(page: Path, out: Path, profile: Path, size: str = "1200,2400") -> None:
    """Chromium headless, offline (no network, no first-run, no sync), on an empty profile."""
    cmd = [
        CHROMIUM or "chromium",
        "--headless",
        *CHROMIUM_ARGS,
        f"--user-data-dir={profile}",
        "--hide-scrollbars",
        f"--window-size={size}",
        f"--screenshot={out}",
        page.as_uri(),
    ]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    assert out.exists()


def test_every_track_gets_its_opensim_files(tmp_path: Path) -> None:
    """The track present in most frames writes markers.trc / angles.mot, every other track its
    own markers_track{ID}.trc / angles_track{ID}.mot; angles.csv holds both tracks."""
    from synthetic_poses import poses_document, standing

    n = 30
    people = np.stack([standing(n), standing(n) + [300, 0]], axis=1)
    people[:10, 0] = np.nan  # track 4 is present in fewer frames than track 9
    analysis = analyze(poses_document(people, np.arange(n) / 30, tracks=[4, 9]))
    files = write_outputs(analysis, tmp_path, plots=False)
    assert {"markers.trc", "angles.mot", "markers_track4.trc", "angles_track4.mot"} <= set(files)
    assert parse_trc(files["markers.trc"])["head"]["NumFrames"] == str(n)
    assert parse_trc(files["markers_track4.trc"])["head"]["OrigDataStartFrame"] == "11"
    with files["angles.csv"].open() as fh:
        assert {row["track"] for row in csv.DictReader(fh)} == {"4", "9"}
