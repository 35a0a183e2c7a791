"""The analysis's parameters: defaults, errors that name the parameter and the fix, and the CLI
options that map onto them."""

from __future__ import annotations

import argparse

import pytest

from posequeue.analysis.cli import FORMATS, _matches, add_param_options, params_from_args
from posequeue.analysis.params import Params
from posequeue.errors import AnalysisError


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"filter": "kalman"}, "filter 'kalman' unknown: use one of butterworth, one-euro, none"),
        ({"order": 3}, "order = 3: must be an even number"),
        ({"min_visibility": 1.5}, "min_visibility = 1.5: must be between 0 and 1"),
        ({"person_height": 175}, "person_height = 175: must be in metres"),
        ({"cutoff": 0}, "cutoff = 0: must be above 0 Hz"),
    ],
)
def test_bad_parameters_are_named(change: dict, message: str) -> None:  # type: ignore[type-arg]
    """A bad value is refused with the parameter's name, its value and what it must be."""
    with pytest.raises(AnalysisError, match=message):
        Params(**change)


def test_json_round_trip_and_unknown_keys() -> None:
    """Parameters travel as JSON in the task message; an unknown key is an error naming it."""
    p = Params(cutoff=4.0, person_height=1.8, filter="one-euro")
    assert Params.from_json(p.to_json()) == p
    with pytest.raises(AnalysisError, match="unknown analysis parameters \\['cutof'\\]"):
        Params.from_json({"cutof": 4})


def test_cli_options_map_onto_parameters() -> None:
    """Every option of the analysis group lands on the parameter of the same name."""
    parser = argparse.ArgumentParser()
    add_param_options(parser)
    args = parser.parse_args(
        ["--cutoff", "4", "--no-outliers", "--no-flip", "--max-gap", "5", "--px-per-m", "300"]
    )
    p = params_from_args(args)
    assert (p.cutoff, p.outliers, p.flip_left_right, p.max_gap, p.px_per_m) == (4.0, False, False, 5, 300.0)
    assert params_from_args(parser.parse_args([])) == Params()


def test_results_formats_select_their_files() -> None:
    """--format report fetches the page and its video, plots a folder, analysis-all everything."""
    names = ["angles.csv", "report.html", "overlay.mp4", "plots/track0_trunk.png", "markers.trc"]
    pick = {fmt: [n for n in names if any(_matches(n, p) for p in pats)] for fmt, pats in FORMATS.items()}
    assert pick["report"] == ["report.html", "overlay.mp4"]
    assert pick["plots"] == ["plots/track0_trunk.png"]
    assert pick["analysis-all"] == names and pick["angles"] == ["angles.csv"]
