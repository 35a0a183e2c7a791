"""posequeue against Ray Data on the same job, same machine, same model code; one JSON object.

The job is spine's long job: a 640x360 video with a person in every frame (60 s by default).

- ``posequeue``: perf's layouts "one all-stage worker" (the default: one single-thread process
  pinned to each core) and "one process" (2 runtime threads), submit to done with warm workers;
- ``posequeue_video_mode``: the default worker again, the job submitted ``--video-mode`` (the
  detector only where nobody is followed: work Ray's pipeline does on every frame);
- ``ray_data``: the same video through Ray Data. Segments of the video are decoded by one Ray
  task at a time with posequeue's own ``read_segment`` and ``work_frame`` (as the ingest task
  does), then ``map_batches`` with a fixed actor pool (``ActorPoolStrategy(size=n)``) whose
  actors run posequeue's ``DetectorStage`` and ``LandmarkStage`` (the worker's pre/post-processing
  and the tflite runtime) on batches of 8. One actor is unpinned with 2 runtime threads, like
  the one worker; two actors pin themselves to one core each through posequeue's core claims,
  like the two pinned workers. Only the orchestration differs: Ray's object store instead of
  Redis, no Celery, no store writes.

Frames/s for Ray come two ways: ``wall`` (execution start to the last result, actor start-up
and model loading included) and ``steady`` (from the moment every actor has loaded its models,
the frames finished after it over that time: posequeue's workers are up before the job is
submitted). The ratio posequeue / Ray uses ``steady``, the stricter of the two for posequeue.
Ray's keypoints are checked against posequeue's results for the same frames.

Needs Ray, which is not a posequeue dependency: run it in the bench venv (``make bench`` builds
``.venv-bench``). Usage: .venv-bench/bin/python benchmarks/ray_data.py [--seconds 60]
[--skip posequeue,ray_data] [--out benchmarks/ray-results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from perf import layouts, patched_env
from spine import ROOT, raw_loops, report  # also puts tests/ on sys.path

BATCH = 8
SEGMENT_FRAMES = 60  # 2 s at 30 fps: posequeue's POSEQUEUE_SEGMENT_SECONDS
# posequeue's layout compared with each Ray run: the default worker (one single-thread process
# per core) against the pinned actors, one process with a two-thread runtime against one actor.
POSEQUEUE_LAYOUTS = {1: "one_all_stage_worker_one_process", 2: "one_all_stage_worker"}
RAY_NICENESS = "RAY_worker_niceness"  # Ray's config override for its workers' nice value
RAY_KEYS = {1: "1_actor", 2: "2_actors_pinned_one_core_each"}  # the Ray run matching each layout
VIDEO_MODE_LAYOUT = POSEQUEUE_LAYOUTS[2]  # run again on jobs submitted --video-mode


# -- the Ray side ---------------------------------------------------------------------------
def segments(video: Path, frames: int = SEGMENT_FRAMES) -> list[dict[str, Any]]:
    """Where each segment starts: the pts of the frame before it (-1 for the first), found by
    demuxing without decoding, so segments can be decoded independently."""
    import av

    with av.open(str(video)) as container:
        pts = sorted(p.pts for p in container.demux(video=0) if p.pts is not None)
    return [{"first": k, "after_pts": -1 if k == 0 else pts[k - 1]} for k in range(0, len(pts), frames)]


def decode_segment(row: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One segment's working frames, as posequeue's ingest makes them (a Ray Data task)."""
    from posequeue.config.settings import get_settings
    from posequeue.producer.preprocess import display_size, work_frame
    from posequeue.producer.video import DecodeStats, read_segment, rotation_of

    first, after = int(row["first"][0]), int(row["after_pts"][0])
    pixels, times, display = [], [], []
    for item in read_segment(
        str(row["video"][0]), None if after < 0 else after, 1e9, DecodeStats(), max_frames=SEGMENT_FRAMES
    ):
        rotation = rotation_of(item.frame)
        pixels.append(work_frame(item.frame, rotation, get_settings().work_long_side))
        times.append(item.t)
        display.append(display_size(item.frame, rotation))
    return {
        "index": np.arange(first, first + len(pixels)),
        "t": np.array(times),
        "display": np.array(display),
        "frame": np.stack(pixels),
    }


class BlazePose:
    """A Ray Data actor: posequeue's two model stages, loaded once, run on each batch."""

    def __init__(self, pin: bool, lock_dir: str) -> None:
        if pin:  # one core per actor, claimed the way `posequeue worker --cores N` claims it
            from posequeue.worker.pinning import CoreSpecError, claim_cores, pin_cpu

            for core in sorted(os.sched_getaffinity(0)):
                try:
                    claim_cores([core], "cpu", "ray-actor", Path(lock_dir))
                except CoreSpecError:
                    continue
                pin_cpu([core])
                break
        from posequeue.worker import stages

        self.detector = stages.load("blazepose", "detector")
        self.landmarks = stages.load("blazepose", "landmarks")
        self.ready_at = time.time()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from posequeue.config.schemas import BatchMeta

        frames = batch["frame"]
        h, w = frames.shape[1:3]
        display = tuple(int(x) for x in batch["display"][0])
        meta = BatchMeta("ray", 0, batch["index"].tolist(), batch["t"].tolist(), display, (w, h), "blazepose")
        found = self.detector.run({"frames": frames}, meta)  # np.frombuffer reads the array as is
        result = found if found.people is not None else self.landmarks.run(found.payload, meta)
        keypoints = np.full((len(frames), 33, 5), np.nan)
        for i, people in enumerate(result.people or []):
            if people:
                keypoints[i] = people[0]["keypoints"]
        n = len(frames)
        return {
            "index": batch["index"],
            "keypoints": keypoints,
            "done_at": np.full(n, time.time()),
            "ready_at": np.full(n, self.ready_at),
            "pid": np.full(n, os.getpid()),
            "cores": np.full(n, sum(1 << c for c in os.sched_getaffinity(0))),
            "nice": np.full(n, os.getpriority(os.PRIO_PROCESS, 0)),
        }


def ray_run(video: Path, actors: int, lock_dir: Path) -> tuple[dict[str, Any], np.ndarray]:
    """Run the pipeline with a fixed pool of ``actors``; figures and keypoints by frame index."""
    import ray

    items = [{**s, "video": str(video)} for s in segments(video)]
    started = time.time()
    # One block per segment; decoding reserves no logical CPU (num_cpus=0) so that it is never
    # held back by the actors, which reserve one each, and runs one segment at a time as
    # posequeue's ingest chain does.
    ds = (
        ray.data.from_items(items, override_num_blocks=len(items))
        .map_batches(decode_segment, batch_size=1, num_cpus=0, compute=ray.data.TaskPoolStrategy(size=1))
        .map_batches(
            BlazePose,
            batch_size=BATCH,
            num_cpus=1,
            fn_constructor_kwargs={"pin": actors > 1, "lock_dir": str(lock_dir)},
            compute=ray.data.ActorPoolStrategy(size=actors),
        )
    )
    out = ds.to_numpy_refs()
    cols = [ray.get(ref) for ref in out]
    ended = time.time()
    got = {k: np.concatenate([c[k] for c in cols]) for k in cols[0]}
    order = np.argsort(got["index"])
    frames = len(order)
    ready = float(got["ready_at"].max())  # every actor has its models
    after = got["done_at"] > ready
    last = float(got["done_at"].max())
    figures = {
        "actors": actors,
        "actors_used": len(set(got["pid"].tolist())),  # a short video may not
        "pinned_one_core_each": actors > 1,
        "frames": frames,  # reach the second actor
        "actor_cpu_affinity": {
            str(pid): [c for c in range(64) if mask >> c & 1]
            for pid, mask in sorted(set(zip(got["pid"].tolist(), got["cores"].tolist(), strict=True)))
        },
        "actor_niceness": sorted(set(got["nice"].tolist())),
        "seconds_wall": round(ended - started, 2),
        "frames_per_s_wall": round(frames / (ended - started), 1),
        "startup_s": round(ready - started, 2),
        "frames_per_s_steady": round(int(after.sum()) / (last - ready), 1) if last > ready else None,
    }
    return figures, got["keypoints"][order]


def ray_data(video: Path, tmp: Path) -> tuple[dict[str, Any], dict[int, np.ndarray]]:
    import ray

    # Ray starts its workers at nice 15 by default; posequeue's workers run at 0. Same priority,
    # or any other load on the machine slows Ray's actors first.
    os.environ.setdefault(RAY_NICENESS, "0")
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    figures: dict[str, Any] = {"ray": ray.__version__, "cluster_cpus": os.cpu_count()}
    keypoints = {}
    try:
        for n in POSEQUEUE_LAYOUTS:
            figures[RAY_KEYS[n]], keypoints[n] = ray_run(video, n, tmp / f"locks{n}")
    finally:
        ray.shutdown()
    return figures, keypoints


# -- comparison -----------------------------------------------------------------------------
def posequeue_keypoints(folder: Path) -> np.ndarray:
    """The keypoints of the one job run in a layout's folder (its store is still there)."""
    (path,) = folder.glob("store/jobs/*/poses.json")
    frames = json.loads(path.read_text())["frames"]
    out = np.full((len(frames), 33, 5), np.nan)
    for i, frame in enumerate(frames):
        if frame["people"]:
            out[i] = frame["people"][0]["keypoints"]
    return out


def agreement(ours: np.ndarray, theirs: np.ndarray) -> dict[str, Any]:
    """Same frames, same person found, and how far apart the keypoints are (pixels, x and y)."""
    if ours.shape != theirs.shape:
        return {"same_frames": False, "frames": [len(ours), len(theirs)]}
    a, b = ~np.isnan(ours[:, 0, 0]), ~np.isnan(theirs[:, 0, 0])
    both = a & b
    diff = np.abs(ours[both][..., :2] - theirs[both][..., :2])
    return {
        "same_frames": True,
        "frames": len(ours),
        "person_found_same": int((a == b).sum()),
        "compared": int(both.sum()),
        "max_abs_xy_px": round(float(diff.max()), 3) if both.any() else None,
        "mean_abs_xy_px": round(float(diff.mean()), 4) if both.any() else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60, help="length of the 640x360 video")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "ray-results.json"))
    parser.add_argument(
        "--skip", default="", help="comma-separated sections: posequeue, posequeue_video_mode, ray_data"
    )
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))

    import videos

    figures: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "processor": platform.processor() or platform.machine(),
        },
    }
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        video = videos.make_person_video(tmp / "long.mp4", seconds=args.seconds, width=640, height=360)
        figures["video"] = {"seconds": args.seconds, "size": "640x360", "batch_size": BATCH}
        ours: dict[int, np.ndarray] = {}
        figures["raw_two_model_loop_before"] = chained(raw_loops())
        if "posequeue" not in skip:
            (tmp / "layouts").mkdir()
            figures["posequeue"] = layouts(tmp / "layouts", video, tuple(POSEQUEUE_LAYOUTS.values()))
            ours = {n: posequeue_keypoints(tmp / "layouts" / name) for n, name in POSEQUEUE_LAYOUTS.items()}
            print("# posequeue done", file=sys.stderr)
        if "posequeue_video_mode" not in skip:  # the default worker, jobs submitted --video-mode
            (tmp / "video_mode").mkdir()
            with patched_env(POSEQUEUE_VIDEO_MODE="true"):
                figures["posequeue_video_mode"] = layouts(tmp / "video_mode", video, (VIDEO_MODE_LAYOUT,))
            print("# posequeue video mode done", file=sys.stderr)
        if "ray_data" not in skip:
            figures["ray_data"], theirs = ray_data(video, tmp)
            print("# ray_data done", file=sys.stderr)
            if ours:
                figures["posequeue_over_ray_data"] = {}
                for n, name in POSEQUEUE_LAYOUTS.items():
                    ray_fig = figures["ray_data"][RAY_KEYS[n]]
                    pq = figures["posequeue"][name]["frames_per_s"]
                    figures["posequeue_over_ray_data"][f"{name}_vs_{RAY_KEYS[n]}"] = {
                        "posequeue_frames_per_s": pq,
                        "ray_frames_per_s_steady": ray_fig["frames_per_s_steady"],
                        "ratio_vs_steady": round(pq / ray_fig["frames_per_s_steady"], 3),
                        "ratio_vs_wall": round(pq / ray_fig["frames_per_s_wall"], 3),
                        "keypoints_vs_posequeue": agreement(ours[n], theirs[n]),
                    }
            if "posequeue_video_mode" in figures:
                pq = figures["posequeue_video_mode"][VIDEO_MODE_LAYOUT]["frames_per_s"]
                ray_fig = figures["ray_data"][RAY_KEYS[2]]
                figures["posequeue_over_ray_data"][f"{VIDEO_MODE_LAYOUT}_video_mode_vs_{RAY_KEYS[2]}"] = {
                    "posequeue_frames_per_s": pq,
                    "ray_frames_per_s_steady": ray_fig["frames_per_s_steady"],
                    "ratio_vs_steady": round(pq / ray_fig["frames_per_s_steady"], 3),
                    "ratio_vs_wall": round(pq / ray_fig["frames_per_s_wall"], 3),
                }
        figures["raw_two_model_loop_after"] = chained(raw_loops())
        raw = (
            figures["raw_two_model_loop_before"]["frames_per_s"]
            + figures["raw_two_model_loop_after"]["frames_per_s"]
        ) / 2
        figures["posequeue_over_raw_two_model_loop"] = {
            name: round(fig["frames_per_s"] / raw, 3) for name, fig in figures.get("posequeue", {}).items()
        }
        for name, fig in figures.get("posequeue_video_mode", {}).items():
            figures["posequeue_over_raw_two_model_loop"][f"{name}_video_mode"] = round(
                fig["frames_per_s"] / raw, 3
            )
    report(figures, args.out)


def chained(loops: dict[str, dict[str, float]]) -> dict[str, Any]:
    """The raw two-model loop: both models one after the other on each batch, the worker's
    threads (all cores), from each model's raw loop."""
    det, lm = (loops[s]["frames_per_s_worker_threads"] for s in ("detector", "landmarks"))
    det1, lm1 = (loops[s]["frames_per_s_one_core"] for s in ("detector", "landmarks"))
    return {
        "models": loops,
        "frames_per_s": round(1 / (1 / det + 1 / lm), 1),
        "one_core_times_cores_frames_per_s": round(len(os.sched_getaffinity(0)) / (1 / det1 + 1 / lm1), 1),
    }


if __name__ == "__main__":
    main()
