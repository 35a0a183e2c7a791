"""The s3:// store through a real S3 HTTP API (moto's server): local videos are uploaded for
producers on other hosts, s3:// videos are streamed with ranged reads, results land in the bucket."""

from __future__ import annotations

import json

import boto3
import pytest
from conftest import SAMPLE, posequeue

pytestmark = pytest.mark.integration


@pytest.fixture
def s3_fleet(bucket, isolated, start_worker):  # type: ignore[no-untyped-def]
    env = {**isolated, "POSEQUEUE_STORE": f"s3://{bucket}/fleet"}
    start_worker(POSEQUEUE_BROKER_URL=env["POSEQUEUE_BROKER_URL"], POSEQUEUE_STORE=env["POSEQUEUE_STORE"])
    return env


def test_local_video_to_s3_store(s3_fleet, bucket) -> None:
    """A local video is uploaded under inputs/ and its results are written under jobs/."""
    out = posequeue("submit", str(SAMPLE), "--wait", "--json", env=s3_fleet)
    job = json.loads(out.stdout.splitlines()[-1])
    assert job["status"] == "done", job.get("error")
    assert job["video"].startswith(f"s3://{bucket}/fleet/inputs/{job['job_id']}/")
    s3 = boto3.client("s3")
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="fleet/jobs/")["Contents"]}
    prefix = f"fleet/jobs/{job['job_id']}/"
    assert {prefix + n for n in ("poses.json", "poses.csv", "manifest.json")} <= keys
    assert not any("/parts/" in k for k in keys)  # per-batch parts are cleaned up
    body = s3.get_object(Bucket=bucket, Key=prefix + "poses.json")["Body"].read()
    assert len(json.loads(body)["frames"]) == 90


def test_s3_video_input(s3_fleet, bucket, tmp_path) -> None:
    """An s3:// video is read in place; `posequeue results` fetches the CSV from the bucket."""
    boto3.client("s3").upload_file(str(SAMPLE), bucket, "videos/astronaut.mp4")
    out = posequeue("submit", f"s3://{bucket}/videos/astronaut.mp4", "--wait", "--json", env=s3_fleet)
    job = json.loads(out.stdout.splitlines()[-1])
    assert job["status"] == "done", job.get("error")
    assert job["results"]["json"] == f"s3://{bucket}/fleet/jobs/{job['job_id']}/poses.json"
    target = tmp_path / "poses.csv"
    got = posequeue("results", job["job_id"], "--format", "csv", "-o", str(target), env=s3_fleet)
    assert got.returncode == 0, got.stderr
    assert target.read_text().startswith("frame,t,person,track,keypoint,x,y,z,visibility,presence\n")
