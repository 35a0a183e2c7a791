"""PNG plots: per track and angle (left and right together, for a bilateral comparison), the
angle over time, raw (measured, thin) against filtered (thick), filled samples marked.
matplotlib's Agg backend, no display needed."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from posequeue.analysis.pipeline import Analysis, TrackResult
from posequeue.analysis.tracks import FILLED

SIDE_COLOURS = {"right": "#d55e00", "left": "#0072b2", "": "#333333"}  # Okabe-Ito orange, blue


def base_name(angle: str) -> str:
    """``right_knee`` -> ``knee``; central angles (``trunk``) are their own base."""
    side, _, rest = angle.partition("_")
    return rest if side in ("left", "right") else angle


def plot_name(track_id: int, angle: str) -> str:
    """The plot that shows ``angle`` (either side's name gives the pair's plot)."""
    return f"plots/track{track_id}_{base_name(angle)}.png"


def write_plots(analysis: Analysis, folder: Path) -> dict[str, Path]:
    """Every track's angle plots under ``folder/plots``; returns {relative name: path}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    (folder / "plots").mkdir(exist_ok=True)
    out = {}
    fig, ax = plt.subplots(figsize=(9, 2.8), dpi=90)
    for tr in analysis.tracks:
        groups: dict[str, list[str]] = {}
        for name in tr.angles:
            groups.setdefault(base_name(name), []).append(name)
        for base, names in groups.items():
            ax.clear()
            _draw(ax, tr, base, names)
            fig.tight_layout()
            rel = plot_name(tr.track.track_id, base)
            fig.savefig(folder / rel)
            out[rel] = folder / rel
    plt.close(fig)
    return out


def _draw(ax, tr: TrackResult, base: str, names: list[str]) -> None:
    t = tr.track.t
    drawn = False
    for name in names:
        s = tr.angles[name]
        side = name.partition("_")[0] if name != base else ""
        colour = SIDE_COLOURS.get(side, SIDE_COLOURS[""])
        label = side or "filtered"
        ax.plot(t, s.raw, color=colour, lw=0.6, alpha=0.45)
        ax.plot(t, s.filtered, color=colour, lw=1.5, label=label)
        filled = (s.flags & FILLED).astype(bool)
        if filled.any():
            ax.plot(t[filled], s.filtered[filled], "o", ms=2.2, color=colour, alpha=0.8)
        drawn = drawn or not np.isnan(s.filtered).all()
    ax.set_title(
        f"track {tr.track.track_id}: {base.replace('_', ' ')} (thin: raw, thick: filtered, dots: filled)",
        fontsize=10,
        loc="left",
    )
    ax.set_xlabel("time (s)")
    ax.set_ylabel("degrees")
    ax.grid(alpha=0.3)
    if drawn:
        ax.legend(loc="upper right", fontsize=8, ncol=2)
