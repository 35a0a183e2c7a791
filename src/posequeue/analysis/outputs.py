"""Every file of an analysis, written into one folder (then uploaded beside poses.json).

| file | what |
|---|---|
| angles.csv | frame, t, track, angle, raw, filtered, velocity, flags |
| speeds.csv | per track and frame, each keypoint's speed (px/s, m/s with a scale) |
| analysis.json | summary per track (range of motion, frames), parameters, definitions, versions |
| markers.trc, angles.mot | OpenSim files of the main track (others: markers_track{ID}.trc, ...) |
| plots/track{ID}_{angle}.png | each angle over time (left and right together), raw against filtered |
| overlay.mp4 | the video with each track's skeleton, ID and main angles (needs the video) |
| report.html | one page with all of the above |
"""

from __future__ import annotations

from pathlib import Path

from posequeue.analysis import opensim
from posequeue.analysis.pipeline import Analysis
from posequeue.analysis.plots import write_plots
from posequeue.analysis.report import write_report
from posequeue.analysis.tables import write_analysis_json, write_angles_csv, write_speeds_csv

CONTENT_TYPES = {
    ".csv": "text/csv",
    ".json": "application/json",
    ".trc": "text/plain",
    ".mot": "text/plain",
    ".png": "image/png",
    ".mp4": "video/mp4",
    ".html": "text/html",
}


def write_outputs(
    analysis: Analysis, folder: Path, video: str | Path | None = None, plots: bool = True
) -> dict[str, Path]:
    """Write the analysis's files into ``folder``; returns {name relative to the folder: path}.
    ``video``: the job's input (a path or URL PyAV opens) for the overlay; None skips it."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {"angles.csv": folder / "angles.csv", "speeds.csv": folder / "speeds.csv"}
    write_angles_csv(analysis, files["angles.csv"])
    write_speeds_csv(analysis, files["speeds.csv"])
    files.update(opensim.write_all(analysis, folder))
    if plots:
        files.update(write_plots(analysis, folder))
    overlay = None
    if video is not None and analysis.params.overlay:
        from posequeue.analysis.overlay import write_overlay

        overlay = folder / "overlay.mp4"
        write_overlay(analysis, video, overlay)
        files["overlay.mp4"] = overlay
    files["report.html"] = folder / "report.html"
    write_report(analysis, folder, overlay, files["report.html"])
    files["analysis.json"] = folder / "analysis.json"
    write_analysis_json(analysis, sorted(files), files["analysis.json"])
    return files
