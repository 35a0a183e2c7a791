"""run_analysis against an S3 store (moto's server): poses.json read from the bucket, the video
streamed from it for the overlay, every output written back beside poses.json."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import numpy as np
import pytest
from synthetic_poses import poses_document, standing
from videos import make_video

from posequeue.analysis.params import Params
from posequeue.analysis.run import run_analysis

pytestmark = pytest.mark.integration


def test_analysis_reads_and_writes_the_s3_store(bucket: str, tmp_path: Path) -> None:
    """Outputs land under the job's prefix in the bucket; the overlay is drawn on the s3:// video."""
    from posequeue.store import open_store

    n = 20
    video = make_video(tmp_path / "in.mp4", width=320, height=240, frames=n)
    s3 = boto3.client("s3")
    s3.upload_file(str(video), bucket, "analysis-run/inputs/in.mp4")
    people = (standing(n)[:, None] - [400, 100]) * 0.3
    poses = poses_document(people, np.arange(n) / 30)
    poses["video"].update(width=320, height=240, source=f"s3://{bucket}/analysis-run/inputs/in.mp4")
    store = open_store(f"s3://{bucket}/analysis-run")
    store.put_bytes("jobs/j1/poses.json", json.dumps(poses).encode())

    uris = run_analysis("j1", Params(), store)

    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="analysis-run/jobs/j1/")["Contents"]}
    for name in ("angles.csv", "analysis.json", "markers.trc", "angles.mot", "overlay.mp4", "report.html"):
        assert f"analysis-run/jobs/j1/{name}" in keys and uris[name].endswith(f"/jobs/j1/{name}")
    doc = json.loads(store.get_bytes("jobs/j1/analysis.json"))
    assert doc["notes"] == [] and doc["tracks"][0]["frames"]["present"] == n
