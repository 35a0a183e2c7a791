"""The memory budget's ledger in a real Redis: one limit for every job's payloads together,
shared fairly, released with the payload, never leaked by a holder that died."""

from __future__ import annotations

import time

import pytest
import redis

from posequeue.config import keys
from posequeue.config.budget import Budget
from posequeue.jobs import Jobs

pytestmark = pytest.mark.integration
MB = 2**20


@pytest.fixture
def r(isolated):  # type: ignore[no-untyped-def]
    return redis.Redis.from_url(isolated["POSEQUEUE_BROKER_URL"])


@pytest.fixture
def budget(r) -> Budget:  # type: ignore[no-untyped-def]
    return Budget(r, 10 * MB)


def test_admits_up_to_the_limit_and_refuses_beyond(budget) -> None:
    """Batches are admitted while they fit in the limit, whichever job asks; the ledger's peak
    is what it held at most."""
    assert budget.acquire("a", 0, 4 * MB, 60).admitted
    assert budget.acquire("a", 1, 4 * MB, 60).admitted  # alone, a may take it all
    refused = budget.acquire("b", 0, 4 * MB, 60)
    assert not refused.admitted and refused.held == 8 * MB  # 12 MB would pass the limit
    assert budget.acquire("b", 0, 2 * MB, 60).admitted
    assert not budget.acquire("c", 0, 1, 60).admitted  # full
    assert budget.held() == {"a": 8 * MB, "b": 2 * MB}
    assert budget.peak() == 10 * MB


def test_a_batch_already_held_is_admitted_again(budget) -> None:
    """A redelivered segment storing a batch again is admitted even with the ledger full, and
    its reservation is replaced, not added to."""
    assert budget.acquire("a", 0, 10 * MB, 60).admitted
    again = budget.acquire("a", 0, 9 * MB, 60)
    assert again.admitted and budget.held() == {"a": 9 * MB}


def test_a_long_job_does_not_starve_a_later_one(budget, r) -> None:
    """A job holding the whole ledger is refused the bytes its finished batches free while a
    later job waits: the later one takes them, up to an equal share."""
    for k in range(5):
        assert budget.acquire("long", k, 2 * MB, 60).admitted
    assert not budget.acquire("short", 0, 2 * MB, 60).admitted  # full: short now waits
    budget.drop("long", 0)
    refused = budget.acquire("long", 5, 2 * MB, 60)
    assert not refused.admitted and refused.share == 5 * MB  # two jobs compete: half each
    assert budget.acquire("short", 0, 2 * MB, 60).admitted
    budget.drop("long", 1)
    budget.drop("long", 2)
    assert budget.acquire("short", 1, 2 * MB, 60).admitted  # 4 MB: within its share
    assert not budget.acquire("short", 2, 2 * MB, 60).admitted  # 6 MB would pass it
    assert not budget.acquire("long", 5, 2 * MB, 60).admitted  # nor long: 4 MB + 2 > 5 MB
    budget.drop("long", 3)
    assert budget.acquire("long", 5, 2 * MB, 60).admitted  # at 2 MB, long may grow again
    assert budget.held() == {"long": 4 * MB, "short": 4 * MB}


def test_every_job_gets_one_batch_when_shares_are_smaller(budget) -> None:
    """With more jobs than batches fit in equal shares, each job still gets one batch while
    the limit allows, and none gets a second."""
    for job in "abcd":
        assert not budget.fits(job, 3 * MB).admitted or budget.acquire(job, 0, 3 * MB, 60).admitted
    held = budget.held()
    assert held == {"a": 3 * MB, "b": 3 * MB, "c": 3 * MB}  # d: 12 MB would pass the limit
    assert not budget.acquire("a", 1, 1 * MB, 60).admitted  # share: 10/4 MB, a holds 3


def test_drop_deletes_the_batch_and_its_reservation_together(budget, r) -> None:
    """Dropping a batch deletes its hash and releases its bytes in one script."""
    key = keys.batch_key("a", 0)
    assert budget.acquire("a", 0, 5 * MB, 60).admitted
    r.hset(key, "frames", b"x" * 100)
    budget.drop("a", 0)
    assert not r.exists(key) and budget.held() == {}
    assert budget.acquire("b", 0, 10 * MB, 60).admitted


def test_hand_over_reserves_what_the_hash_holds_and_never_recreates_it(budget, r) -> None:
    """A stage hand-over sets the batch's reservation to the bytes its hash holds afterwards;
    a hand-over that comes after the batch was deleted writes nothing."""
    key = keys.batch_key("a", 0)
    assert budget.acquire("a", 0, 5 * MB, 60).admitted
    r.hset(key, mapping={"meta": b"{}", "frames": b"f" * 4000})
    assert budget.advance("a", 0, {"crops": b"c" * 300, "rois": b"r" * 20}, ["frames"])
    assert r.hkeys(key) and set(r.hkeys(key)) == {b"meta", b"crops", b"rois"}
    assert budget.held() == {"a": 2 + 300 + 20}
    budget.drop("a", 0)
    assert not budget.advance("a", 0, {"crops": b"c" * 300}, ["frames"])
    assert not r.exists(key) and budget.held() == {}


def test_a_failed_job_leaves_no_pixels(isolated, r) -> None:
    """Failing a job deletes its stored batches and releases their bytes at once (workers
    would otherwise drop them only when they meet them)."""
    jobs = Jobs(r, max_redis_mb=4)
    job_id = jobs.create(job_id=jobs.new_id(), model="blazepose", video="v.mp4", batch_size=8, source="v")
    jobs.mark_running(job_id, {})
    for k in range(2):
        assert jobs.budget.acquire(job_id, k, 1000, 60).admitted
        jobs.put_batch({"job_id": job_id, "index": k}, {"frames": b"x" * 1000}, 60)
    assert jobs.budget.acquire("other", 0, 1000, 60).admitted
    assert jobs.fail(job_id, "cancelled")
    assert not r.keys(keys.batch_key(job_id, "*"))
    assert jobs.budget.held() == {"other": 1000}


def test_a_dead_holders_reservation_lapses_with_its_lease(budget, r) -> None:
    """A reservation nobody released (its holder died between reserving and storing, or the
    payload expired) is released when its lease, the payload's TTL, ends."""
    assert budget.acquire("dead", 0, 10 * MB, 1).admitted
    assert not budget.acquire("b", 0, 1 * MB, 60).admitted
    deadline = time.monotonic() + 5
    while not budget.acquire("b", 0, 1 * MB, 60).admitted:
        assert time.monotonic() < deadline, budget.held()
        time.sleep(0.1)
    assert budget.held() == {"b": 1 * MB}
