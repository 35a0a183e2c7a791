"""Callbacks: a signed POST to a job's ``callback_url`` when the job ends, retried with backoff.

Sent by the API process, never by a worker: submitting a job with a callback_url puts its id in
the ``pq:callbacks`` sorted set (in the transaction that creates the job; the score is when to
look at it next). Each API process runs one sender thread that takes due entries, checks the
job, and posts once it has ended. An entry is claimed by moving its score a lease ahead, so
several API processes share the work and none sends an attempt twice; a sender that dies
mid-attempt leaves the entry to be retried when the lease runs out. Nothing is lost while no API
runs: the entries wait in Redis. A job ends when its status is ``done`` or ``failed``; the
callback follows within about ``POLL`` seconds.

The body is JSON (``event``, ``sent_at``, ``job``: the job as ``GET /v1/jobs/{id}`` shows it);
the header ``X-Posequeue-Signature: sha256=HEX`` is HMAC-SHA256 of the exact body bytes with
``POSEQUEUE_CALLBACK_SECRET``. A 2xx answer ends it; anything else (or no answer in ``TIMEOUT``)
is retried after 1, 2, 4, ... seconds, ``ATTEMPTS`` tries in all; the outcome is recorded on
the job (``callback_status``: delivered or failed, ``callback_attempts``, ``callback_error``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from posequeue.config.keys import CALLBACKS, job_key
from posequeue.config.schemas import Job
from posequeue.jobs import JobNotFound, Jobs
from posequeue.logs import get_logger

log = get_logger(__name__)

SIGNATURE_HEADER = "X-Posequeue-Signature"
POLL = 0.5  # seconds between looks at the due entries; a job still running is looked at again in 1 s
TIMEOUT = 10.0  # seconds a receiver has to answer
LEASE = 60.0  # an attempt's claim; longer than TIMEOUT
ATTEMPTS = 8  # 1 + 2 + ... + 64 s of backoff: about two minutes of a receiver being down
SENDERS = 4  # attempts at once, so one slow receiver does not hold the others up

# Claim ARGV[1] (a job id) if it is due at ARGV[2] (now): its score moves to ARGV[3].
_CLAIM = """
local due = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not due or tonumber(due) > tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
return 1
"""


def signature(body: bytes, secret: str) -> str:
    """The header value receivers compare against (``sha256=`` and the hex HMAC of the body)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def backoff(attempt: int) -> float:
    """Seconds before retry number ``attempt`` (1-based)."""
    return float(2 ** (attempt - 1))


def rearm(jobs: Jobs, job_id: str) -> None:
    """A retried job will end again: queue its callback afresh (attempts from zero)."""
    with jobs.r.pipeline() as pipe:
        pipe.hdel(job_key(job_id), "callback_status", "callback_attempts", "callback_error")
        pipe.zadd(CALLBACKS, {job_id: time.time()})
        pipe.execute()


class Sender:
    """The callback sender of one API process (a daemon thread; ``start`` and ``stop``)."""

    def __init__(self, jobs: Jobs, secret: str, describe: Callable[[Job], dict[str, Any]]) -> None:
        self.jobs, self.secret, self.describe = jobs, secret, describe
        self._claim = jobs.r.register_script(_CLAIM)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="posequeue-callbacks", daemon=True)
        self._pool = ThreadPoolExecutor(SENDERS, thread_name_prefix="posequeue-callback")
        self._client = httpx.Client(timeout=TIMEOUT, follow_redirects=False)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._client.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once(time.time())
            except Exception:  # Redis away for a moment: log and look again
                log.exception("callbacks.loop_error")
            self._stop.wait(POLL)

    def run_once(self, now: float) -> int:
        """Claim the due entries and hand each to the pool; how many were claimed."""
        claimed = 0
        for raw in self.jobs.r.zrangebyscore(CALLBACKS, "-inf", now, start=0, num=100):
            job_id = raw.decode()
            if self._claim(keys=[CALLBACKS], args=[job_id, now, now + LEASE]):
                claimed += 1
                self._pool.submit(self._attempt, job_id)
        return claimed

    def _attempt(self, job_id: str) -> None:
        try:
            job = self.jobs.get(job_id)
        except JobNotFound:
            self.jobs.r.zrem(CALLBACKS, job_id)
            return
        if not job.status.finished or (job.analysis is not None and not job.analysis.finished):
            # a done job's callback waits for its analysis, so that it lists the analysis's files
            self.jobs.r.zadd(CALLBACKS, {job_id: time.time() + 1.0})
            return
        attempt = job.callback_attempts + 1
        error = self._post(job, attempt)
        key = job_key(job_id)
        with self.jobs.r.pipeline() as pipe:
            pipe.hset(key, "callback_attempts", attempt)
            if error is None:
                pipe.hset(key, "callback_status", "delivered")
                pipe.hdel(key, "callback_error")
                pipe.zrem(CALLBACKS, job_id)
            elif attempt >= ATTEMPTS:
                pipe.hset(key, mapping={"callback_status": "failed", "callback_error": error})
                pipe.zrem(CALLBACKS, job_id)
            else:
                pipe.hset(key, mapping={"callback_status": "retrying", "callback_error": error})
                pipe.zadd(CALLBACKS, {job_id: time.time() + backoff(attempt)})
            pipe.execute()
        log.info(
            "callback.sent" if error is None else "callback.refused",
            job_id=job_id,
            attempt=attempt,
            error=error,
        )

    def _post(self, job: Job, attempt: int) -> str | None:
        """POST the signed body once; None when the receiver took it, else why not."""
        event = f"job.{job.status.value}"
        body = json.dumps(
            {"event": event, "sent_at": time.time(), "job": self.describe(job)},
            separators=(",", ":"),
        ).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "posequeue-callback",
            SIGNATURE_HEADER: signature(body, self.secret),
            "X-Posequeue-Event": event,
            "X-Posequeue-Attempt": str(attempt),
        }
        try:
            response = self._client.post(str(job.callback_url), content=body, headers=headers)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"
        if 200 <= response.status_code < 300:
            return None
        return f"HTTP {response.status_code}"
