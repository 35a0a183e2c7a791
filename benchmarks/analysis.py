"""Analysis figures, printed as one JSON object:

- a 1-hour 30 fps single-person job (108,000 frames, BlazePose's 33 keypoints, noise, gaps and
  outliers): CPU seconds of each step from reading poses.json to the last file, without the
  overlay (the issue's budget: 60 s);
- overlay encoding at 1280x720 (decode, draw, libx264 veryfast): frames per second, on all
  cores and on one (taskset), against the video's 30 fps.

Usage: python benchmarks/analysis.py [--minutes 60] [--overlay-frames 300] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def _cpu() -> float:
    return time.process_time()


def synthetic_job(minutes: float, path: Path) -> int:
    """Write a poses.json (as finalise does) of one person with a turning arm; returns frames."""
    from synthetic_poses import rotating_arm

    from posequeue.results import ResultWriter

    doc, _ = rotating_arm(seconds=minutes * 60, fps=30.0)
    head = {k: v for k, v in doc.items() if k != "frames"}
    with ResultWriter(path.parent, head, doc["model"]["keypoints"]) as out:
        for frame in doc["frames"]:
            out.write(frame)
    (path.parent / "poses.csv").unlink()
    return len(doc["frames"])


def time_analysis(poses_path: Path, out: Path) -> dict[str, Any]:
    from posequeue.analysis import opensim
    from posequeue.analysis.pipeline import analyze_frames
    from posequeue.analysis.plots import write_plots
    from posequeue.analysis.report import write_report
    from posequeue.analysis.tables import write_analysis_json, write_angles_csv, write_speeds_csv
    from posequeue.analysis.tracks import read_poses

    steps: dict[str, float] = {}
    start = last = _cpu()

    def lap(name: str) -> None:
        nonlocal last
        now = _cpu()
        steps[name] = round(now - last, 2)
        last = now

    head, frames = read_poses(poses_path.read_bytes())
    analysis = analyze_frames(head, frames)
    lap("read poses.json (frame by frame) and analyse (mask, Hampel, fill, filter, angles, speeds)")
    write_angles_csv(analysis, out / "angles.csv")
    lap("angles.csv")
    write_speeds_csv(analysis, out / "speeds.csv")
    lap("speeds.csv")
    opensim.write_all(analysis, out)
    lap("markers.trc + angles.mot")
    write_plots(analysis, out)
    lap("plots")
    write_report(analysis, out, None, out / "report.html")
    write_analysis_json(analysis, [], out / "analysis.json")
    lap("report.html + analysis.json")
    sizes = {p.name: p.stat().st_size for p in out.iterdir() if p.is_file()}
    return {"cpu_s_total": round(_cpu() - start, 2), "cpu_s_by_step": steps, "bytes": sizes}


def make_720p(path: Path, frames: int) -> None:
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = 1280, 720, "yuv420p"
        ramp = np.linspace(40, 200, 1280, dtype=np.uint8)[None, :, None].repeat(720, 0).repeat(3, 2)
        for i in range(frames):
            f = av.VideoFrame.from_ndarray(np.roll(ramp, i * 4, axis=1), "rgb24")
            f.pts, f.time_base = i, Fraction(1, 30)
            c.mux(s.encode(f))
        c.mux(s.encode(None))


def time_overlay(frames: int, tmp: Path, one_core: bool) -> dict[str, Any]:
    """Run in a child process so that one-core runs can be pinned with taskset."""
    code = f"""
import json, sys, time
sys.path.insert(0, {str(ROOT / "tests")!r})
from pathlib import Path
import numpy as np
from synthetic_poses import rotating_arm
from posequeue.analysis.pipeline import analyze
from posequeue.analysis.overlay import write_overlay
doc, _ = rotating_arm(seconds={frames} / 30)
a = analyze(doc)
t0, c0 = time.perf_counter(), time.process_time()
n = write_overlay(a, {str(tmp / "in720.mp4")!r}, Path({str(tmp / "overlay720.mp4")!r}))
wall, cpu = time.perf_counter() - t0, time.process_time() - c0
print(json.dumps({{"frames": n, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
                  "fps": round(n / wall, 1)}}))
"""
    cmd = [sys.executable, "-c", code]
    if one_core:
        cmd = ["taskset", "-c", "0", *cmd]
    env = dict(os.environ, OMP_NUM_THREADS="1") if one_core else None
    done = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--overlay-frames", type=int, default=300)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    result: dict[str, Any] = {"cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        frames = synthetic_job(args.minutes, tmp / "poses.json")
        result["analysis"] = {"frames": frames, **time_analysis(tmp / "poses.json", tmp)}
        make_720p(tmp / "in720.mp4", args.overlay_frames)
        result["overlay_1280x720"] = {
            "all_cores": time_overlay(args.overlay_frames, tmp, one_core=False),
            "one_core": time_overlay(args.overlay_frames, tmp, one_core=True),
            "realtime_fps": 30,
        }
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
