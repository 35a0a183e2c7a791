"""Plot benchmarks/perf.py's JSON: throughput against client batch size and against worker layout.

Needs matplotlib, which posequeue does not depend on; it was run from a throwaway venv:
    python -m venv /tmp/plot && /tmp/plot/bin/pip install matplotlib
    /tmp/plot/bin/python benchmarks/plot_perf.py benchmarks/perf-results.json docs/images/performance.png
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(src: str, dst: str) -> None:
    figures = json.loads(Path(src).read_text())
    sweep = next(v for k, v in figures.items() if k.startswith("batch_size_sweep") and "window" not in k)
    wide = next((v for k, v in figures.items() if k.startswith("batch_size_sweep") and "window" in k), {})
    layouts = next(v for k, v in figures.items() if k.startswith("layouts"))
    raw = figures["raw_model_loops"]
    machine = figures["machine"]

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [1, 1.15]})
    sizes = [int(k) for k in sweep]
    fps = [v["frames_per_s"] for v in sweep.values()]
    left.plot(sizes, fps, "o-", color="tab:blue", label="end to end, one all-stage worker")
    for x, y in zip(sizes, fps, strict=True):
        left.annotate(f"{y:.0f}", (x, y), textcoords="offset points", xytext=(0, 7), ha="center")
    if wide:
        left.plot(
            [int(k) for k in wide],
            [v["frames_per_s"] for v in wide.values()],
            "s:",
            color="tab:orange",
            label="same, window 256 batches (not 32)",
        )
        for k, v in wide.items():
            left.annotate(
                f"{v['frames_per_s']:.0f}",
                (int(k), v["frames_per_s"]),
                textcoords="offset points",
                xytext=(12, -4),
                fontsize=8,
                color="tab:orange",
            )
    # the bound of the slower model running alone: both models share the two cores
    d, m = raw["detector"]["frames_per_s_worker_threads"], raw["landmarks"]["frames_per_s_worker_threads"]
    both = 1 / (1 / d + 1 / m)
    left.axhline(both, ls="--", color="grey", label=f"raw models back to back ({both:.0f})")
    left.set_xscale("log", base=2)
    left.set_xticks(sizes, [str(s) for s in sizes])
    left.set_xlabel("client batch size (frames per task)")
    left.set_ylabel("frames/s, submit to done")
    left.set_ylim(0, max(both, *fps) * 1.2)
    left.set_title("Throughput against batch size")
    left.legend(loc="lower right", fontsize=8)

    labels = {
        "one_all_stage_worker": "1 worker\n(all stages)",
        "two_all_stage_workers_pinned_one_core_each": "2 workers\n(1 core each)",
        "two_all_stage_workers_unpinned": "2 workers\n(unpinned)",
        "three_processes_ingest_detector_landmarks": "3 processes\n(one per stage)",
    }
    names = [n for n in labels if n in layouts]
    values = [layouts[n]["frames_per_s"] for n in names]
    bars = right.bar([labels[n] for n in names], values, color="tab:green")
    right.bar_label(bars, fmt="%.1f")
    right.set_ylabel("frames/s, submit to done")
    right.set_ylim(0, max(values) * 1.2)
    right.set_title("Throughput against worker layout (batch 8)")
    right.tick_params(axis="x", labelsize=8)

    fig.suptitle(
        f"posequeue, 60 s 640x360 video, {machine['cpus']} cores {machine['processor']}, "
        f"Python {machine['python']}, {machine['runtime']}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(dst, dpi=110)


if __name__ == "__main__":
    main(*sys.argv[1:3])
