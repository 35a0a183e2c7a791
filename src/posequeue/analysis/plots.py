"""PNG plots: per track and angle, the angle over time, raw (measured) against filtered, with
filled samples marked. matplotlib's Agg backend, no display needed."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from posequeue.analysis.pipeline import Analysis, TrackResult
from posequeue.analysis.tracks import FILLED


def plot_name(track_id: int, angle: str) -> str:
    return f"plots/track{track_id}_{angle}.png"


def write_plots(analysis: Analysis, folder: Path) -> dict[str, Path]:
    """Every track's angle plots under ``folder/plots``; returns {relative name: path}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    (folder / "plots").mkdir(exist_ok=True)
    out = {}
    fig, ax = plt.subplots(figsize=(9, 2.8), dpi=90)
    for tr in analysis.tracks:
        for name in tr.angles:
            ax.clear()
            _draw(ax, tr, name)
            fig.tight_layout()
            rel = plot_name(tr.track.track_id, name)
            fig.savefig(folder / rel)
            out[rel] = folder / rel
    plt.close(fig)
    return out


def _draw(ax, tr: TrackResult, name: str) -> None:  # type: ignore[no-untyped-def]
    s, t = tr.angles[name], tr.track.t
    ax.plot(t, s.raw, color="#bbbbbb", lw=0.8, label="raw")
    ax.plot(t, s.filtered, color="#1f5fbf", lw=1.4, label="filtered")
    filled = (s.flags & FILLED).astype(bool)
    if filled.any():
        ax.plot(t[filled], s.filtered[filled], "o", ms=2.5, color="#e08000", label="filled")
    ax.set_title(f"track {tr.track.track_id}: {name.replace('_', ' ')}", fontsize=10, loc="left")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("degrees")
    ax.grid(alpha=0.3)
    if not np.isnan(s.filtered).all():
        ax.legend(loc="upper right", fontsize=8, ncol=3)
