"""The API's pure parts: byte-range parsing, upload file names, token digests and signed links."""

from __future__ import annotations

import pytest

from posequeue.api.auth import Tokens
from posequeue.api.errors import ApiError
from posequeue.api.ranges import content_type, parse_range
from posequeue.api.upload import safe_name
from posequeue.config.settings import Settings


@pytest.mark.parametrize(
    ("header", "wanted"),
    [
        (None, None),
        ("bytes=0-99", (0, 99)),
        ("bytes=100-", (100, 999)),
        ("bytes=-10", (990, 999)),
        ("bytes=-5000", (0, 999)),
        ("bytes=900-5000", (900, 999)),
        ("bytes=0-0", (0, 0)),
        ("items=0-10", None),  # another unit: the whole file
        ("bytes=0-10,20-30", None),  # several ranges: the whole file, as RFC 9110 allows
        ("bytes=abc", None),
        ("bytes=10-5", None),
        ("bytes=-", None),
        ("bytes=--5", None),
    ],
)
def test_ranges_are_parsed_as_rfc_9110_says(header: str | None, wanted: tuple[int, int] | None) -> None:
    """Single ranges of a 1000-byte file; anything else means the whole file."""
    assert parse_range(header, 1000) == wanted


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=5000-6000", "bytes=-0"])
def test_a_range_past_the_end_is_a_416(header: str) -> None:
    """A range that starts past the end is refused with the file's size in Content-Range."""
    with pytest.raises(ApiError) as caught:
        parse_range(header, 1000)
    assert caught.value.status == 416 and caught.value.headers == {"Content-Range": "bytes */1000"}


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("clip.mp4", "clip.mp4"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\run 1.MOV", "run_1.MOV"),
        ("..", "upload"),
        ("", "upload"),
        ("élan vital.mkv", "lan_vital.mkv"),
    ],
)
def test_upload_names_become_harmless_key_parts(given: str, kept: str) -> None:
    """An upload's file name keeps its last part, letters, digits, '.', '_' and '-' only."""
    assert safe_name(given) == kept


def test_content_types_come_from_the_name() -> None:
    """Results are served with the type of their name (the store knows no types)."""
    assert content_type("overlay.mp4") == "video/mp4"
    assert content_type("plots/track1_knee.png") == "image/png"
    assert content_type("poses.csv").startswith("text/csv")
    assert content_type("markers.trc") == "application/octet-stream"


def test_signed_links_are_bound_to_path_expiry_and_tokens() -> None:
    """A link opens its own path until it expires; another path, a later expiry or another
    token set refuses it; with no tokens links are plain paths."""
    tokens = Tokens.from_settings(Settings(api_tokens="a,b"))
    link = tokens.sign("/v1/jobs/x/results/poses.json")
    path, _, query = link.partition("?")
    params = dict(p.split("=") for p in query.split("&"))
    assert tokens.link_valid(path, params["expires"], params["sig"])
    assert not tokens.link_valid("/v1/jobs/x/results/poses.csv", params["expires"], params["sig"])
    assert not tokens.link_valid(path, str(int(params["expires"]) + 1), params["sig"])
    assert not tokens.link_valid(path, None, params["sig"])
    other = Tokens.from_settings(Settings(api_tokens="a,c"))
    assert not other.link_valid(path, params["expires"], params["sig"])
    expired = tokens.sign(path, now=0)
    _, _, query = expired.partition("?")
    params = dict(p.split("=") for p in query.split("&"))
    assert not tokens.link_valid(path, params["expires"], params["sig"])
    assert Tokens.from_settings(Settings()).sign(path) == path
