"""``report.html``: one file that opens offline in any browser: the job and video, the overlay
video, the range-of-motion table per track, the angle plots (PNG embedded as data URIs), the
parameters and notes.

The overlay is embedded too (a data URI) when it is at most ``EMBED_VIDEO_MB``; a longer video
would make a report of gigabytes, so it is referenced as ``overlay.mp4`` beside the report
(``posequeue results JOB --format report`` fetches both into one folder).
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from posequeue.analysis.angles import MAIN_ANGLES
from posequeue.analysis.pipeline import Analysis
from posequeue.analysis.plots import plot_name
from posequeue.analysis.tables import FLAG_MEANINGS, versions

EMBED_VIDEO_MB = 25
STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1100px;color:#222;padding:0 16px}
h1{font-size:22px}h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px}
td,th{padding:3px 8px;border-bottom:1px solid #eee;text-align:right}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
video{max-width:100%;max-height:70vh;background:#000}img{max-width:100%}.note{color:#a35a00}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:6px}code{background:#f4f4f4;padding:1px 3px}
"""
COLUMNS = ("min", "max", "range", "mean", "p5", "p95", "t_min", "t_max", "peak_velocity")


def _data_uri(path: Path, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode()


def _cell(v: object) -> str:
    return "" if v is None else html.escape(f"{v:.1f}" if isinstance(v, float) else str(v))


def _video(overlay: Path | None) -> str:
    if overlay is None or not overlay.exists():
        return (
            "<p>No overlay video for this analysis (<code>--no-overlay</code>, or no video to draw on).</p>"
        )
    if overlay.stat().st_size <= EMBED_VIDEO_MB * 2**20:
        src = _data_uri(overlay, "video/mp4")
    else:
        src = overlay.name
    return f'<video id="overlay" controls muted playsinline preload="metadata" src="{src}"></video>'


def _rom_table(summary: dict[str, dict[str, object]]) -> str:
    head = "".join(f"<th>{c.replace('_', ' ')}</th>" for c in ("angle", *COLUMNS, "filled", "missing"))
    rows = []
    order = [a for a in MAIN_ANGLES if a in summary] + [a for a in summary if a not in MAIN_ANGLES]
    for name in order:
        s = summary[name]
        cells = "".join(f"<td>{_cell(s[c])}</td>" for c in COLUMNS)
        rows.append(
            f"<tr><td>{name.replace('_', ' ')}</td>{cells}<td>{s['filled']}</td><td>{s['missing']}</td></tr>"
        )
    return f'<table class="rom"><tr>{head}</tr>{"".join(rows)}</table>'


def write_report(analysis: Analysis, folder: Path, overlay: Path | None, path: Path) -> None:
    head = analysis.head
    video = head.get("video", {})
    job = html.escape(str(head.get("job_id")))
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>posequeue analysis {job}</title><style>{STYLE}</style></head><body>",
        f"<h1>Motion analysis: job {job}</h1>",
        f"<p>Video <code>{html.escape(str(video.get('source', '')))}</code>: {video.get('width')}x"
        f"{video.get('height')}, {video.get('fps')} fps, {video.get('frame_count')} frames. "
        f"Model {html.escape(str(head.get('model', {}).get('name')))}. "
        f"{len(analysis.tracks)} track(s).</p>",
        *(f'<p class="note">{html.escape(n)}</p>' for n in analysis.notes),
        "<h2>Overlay</h2>",
        _video(overlay),
    ]
    for tr in analysis.tracks:
        summary = tr.summary()
        frames = summary["frames"]
        tid = tr.track.track_id
        parts += [
            f'<h2 id="track{tid}">Track {tid}</h2>',
            f"<p>{summary['t_start']:.2f}-{summary['t_end']:.2f} s; present in {frames['present']} of "
            f"{frames['frames']} frames; frames with a filled keypoint {frames['with_filled']}, with a "
            f"rejected one {frames['with_rejected']}; Butterworth cutoff {tr.cutoff or '-'} Hz; "
            + (
                f"scale {summary['px_per_m']} px/m"
                if summary["px_per_m"]
                else "no scale: speeds in px/s only"
            )
            + ".</p>",
            "<h3>Range of motion (degrees; times in s; peak velocity in deg/s)</h3>",
            _rom_table(summary["angles"]),
            "<h3>Angles over time</h3><div class=grid>",
            *(
                f'<img alt="{html.escape(rel)}" src="{_data_uri(folder / rel, "image/png")}">'
                for rel in dict.fromkeys(plot_name(tid, name) for name in tr.angles)
                if (folder / rel).exists()
            ),
            "</div>",
        ]
    params = json.dumps(analysis.params.to_json(), indent=1)
    legend = "".join(f"<li><code>{k}</code> {html.escape(v)}</li>" for k, v in FLAG_MEANINGS.items())
    parts += [
        "<h2>Parameters</h2>",
        f"<pre>{html.escape(params)}</pre>",
        f"<p>Flags in angles.csv:</p><ul>{legend}</ul>",
        "<p>Angles follow Sports2D's definitions (see docs/analysis.md); versions: "
        f"{html.escape(json.dumps(versions()))}.</p>",
        "</body></html>",
    ]
    path.write_text("\n".join(parts))
