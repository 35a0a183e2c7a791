"""The analysis's state, kept on the job's record (fields ``analysis_*`` of its hash), so
``posequeue status`` shows it and it expires with the job.

``analysis``: ``off`` (submitted with --no-analysis), ``queued``, ``running``, ``done`` or
``failed``; ``analysis_error``; ``analysis_results`` (JSON: output name -> URI);
``analysis_params`` (JSON); ``analysis_queued_at`` / ``_started_at`` / ``_finished_at``;
``analysis_sends`` (the number of its latest message: one more at each ``request`` and at each
re-send by the watchdog, never reset; a message carries the number it was sent with, and only
the latest may start, beat and end the analysis: a superseded run ends without a word);
``analysis_resends`` (the watchdog's re-sends since the last request, its cap's count: a new
request starts it again); ``analysis_beat_at`` (the running task's heartbeat, every
``beat_interval()`` seconds).

An analysis queued or running is in ``config.keys.ANALYSES`` (added when queued, removed when
it ends, in the same script that writes its status), the watchdog's list of them
(``producer/watchdog.py``): the task is acknowledged when it starts, so a worker lost while it
runs takes the message with it, and only the watchdog can send it again.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

from posequeue.analysis.params import Params
from posequeue.config import queues
from posequeue.config.celery_app import ANALYZE_TASK, app
from posequeue.config.keys import ANALYSES, job_key
from posequeue.config.schemas import AnalysisStatus
from posequeue.config.settings import get_settings
from posequeue.jobs import Jobs
from posequeue.logs import get_logger

__all__ = ["AnalysisStatus", "beating", "mark", "request", "send", "start", "unlist", "wait"]
log = get_logger(__name__)
_STAMPS = {
    AnalysisStatus.QUEUED: "analysis_queued_at",
    AnalysisStatus.RUNNING: "analysis_started_at",
    AnalysisStatus.DONE: "analysis_finished_at",
    AnalysisStatus.FAILED: "analysis_finished_at",
    AnalysisStatus.OFF: "analysis_finished_at",
}


# Writes the analysis's fields on the job record if it exists (KEYS: record, the analyses'
# set; ARGV: job id, now, '+' to list it as pending, '-' to take it off, '' neither, the
# analysis_sends it must have ('' for any: then the analysis must be queued or running), '1' to
# count one more message in analysis_sends, the number of fields to delete, their names, then
# field, value, ...): a task that outlived its job's record must not recreate it half-written,
# and neither the watchdog nor a superseded run may overwrite an analysis that moved on since
# it looked. 0 if not written, else the new analysis_sends if counted, else 1.
_MARK = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[4] ~= '' then
  local now = redis.call('HGET', KEYS[1], 'analysis')
  if now ~= 'queued' and now ~= 'running' then return 0 end
  if redis.call('HGET', KEYS[1], 'analysis_sends') ~= ARGV[4] then return 0 end
end
local n = tonumber(ARGV[6])
if n > 0 then redis.call('HDEL', KEYS[1], unpack(ARGV, 7, 6 + n)) end
redis.call('HSET', KEYS[1], unpack(ARGV, 7 + n))
if ARGV[3] == '+' then redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1]) end
if ARGV[3] == '-' then redis.call('ZREM', KEYS[2], ARGV[1]) end
if ARGV[5] == '1' then return redis.call('HINCRBY', KEYS[1], 'analysis_sends', 1) end
return 1
"""

# The running analysis's heartbeat (KEYS[1]: the job record; ARGV: now, the run's
# analysis_sends, '' for a message from before the count): only while it is running as that
# message, so a run superseded by a re-send or a new request cannot speak for its successor.
# 1 if written.
_BEAT = """
if redis.call('HGET', KEYS[1], 'analysis') ~= 'running' then return 0 end
if ARGV[2] ~= '' and redis.call('HGET', KEYS[1], 'analysis_sends') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'analysis_beat_at', ARGV[1])
return 1
"""

# Takes an ended analysis off the watchdog's list (KEYS: record, the analyses' set; ARGV: job
# id) unless it is queued or running again: an `analyze` between the sweep's read and this must
# stay listed, or its lost message would never be sent again. 1 if taken off.
_UNLIST = """
local now = redis.call('HGET', KEYS[1], 'analysis')
if now == 'queued' or now == 'running' then return 0 end
return redis.call('ZREM', KEYS[2], ARGV[1])
"""

# The start of an analysis task sent as the ARGV[2]th (KEYS[1]: the job record; ARGV[1]: now;
# ARGV[2] '' for a message sent before the count existed): running, if the analysis is still
# queued and this is its latest message. A stale copy (the watchdog sent it again meanwhile,
# or the analysis ended) starts nothing: 0.
_START = """
if redis.call('HGET', KEYS[1], 'analysis') ~= 'queued' then return 0 end
if ARGV[2] ~= '' and redis.call('HGET', KEYS[1], 'analysis_sends') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'analysis', 'running')
redis.call('HSET', KEYS[1], 'analysis_started_at', ARGV[1], 'analysis_beat_at', ARGV[1])
return 1
"""


def mark(
    jobs: Jobs,
    job_id: str,
    status: AnalysisStatus,
    expect: int | None = None,
    send_again: bool = False,
    **fields: Any,
) -> int:
    """Record the analysis's status (and its error, results, params, as given) on the job; a
    new analysis clears the previous one's error, results and times. Queued, it joins the
    watchdog's list; ended, it leaves it. ``expect``: only if the analysis is still queued or
    running as its ``expect``th message (the watchdog's changes, and a run's own end).
    ``send_again``: a new message follows, counted in ``analysis_sends``; its number is
    returned. 0 if nothing was written (the job's record is gone, and is not recreated; or the
    analysis moved on), else 1 or that number."""
    now = time.time()
    mapping: dict[str, Any] = {"analysis": status.value, _STAMPS[status]: now}
    for name, value in fields.items():
        mapping[f"analysis_{name}"] = json.dumps(value) if isinstance(value, dict) else value
    stale = ["analysis_error"] if status is not AnalysisStatus.FAILED else []
    if status is AnalysisStatus.QUEUED:
        stale += ["analysis_results", "analysis_started_at", "analysis_finished_at", "analysis_beat_at"]
    listed = "+" if status is AnalysisStatus.QUEUED else "-" if status.finished else ""
    args = [job_id, now, listed, "" if expect is None else expect, "1" if send_again else "", len(stale)]
    args += [*stale, *(x for kv in mapping.items() for x in kv)]
    script = jobs.r.register_script(_MARK)
    return int(script(keys=[job_key(job_id), ANALYSES], args=[str(a) for a in args]))


def first_message(params: Params) -> dict[str, Any]:
    """The record's fields of an analysis queued as its first message, for ``Jobs.finish`` to
    write with the job's end: a client never sees the job done and its analysis not yet
    queued. The finaliser then ``send``s it (the watchdog does, if the finaliser died first)."""
    return {
        "analysis": AnalysisStatus.QUEUED.value,
        _STAMPS[AnalysisStatus.QUEUED]: time.time(),
        "analysis_params": json.dumps(params.to_json()),
        "analysis_sends": 1,
        "analysis_resends": 0,
    }


def request(jobs: Jobs, job_id: str, params: Params) -> None:
    """Queue an analysis of a done job; sent by name, so the sender imports no analysis code
    (and needs no scipy). A sender that dies between the two steps leaves a queued analysis
    without a message: the watchdog sends it. Its message gets the next number, so a message
    of an earlier request still queued (or a run still going) is stale; the watchdog's re-sends
    count from here."""
    sends = mark(jobs, job_id, AnalysisStatus.QUEUED, send_again=True, params=params.to_json(), resends=0)
    if sends:
        send(job_id, params.to_json(), sends)


def send(job_id: str, params: dict[str, Any], sends: int) -> None:
    """Send the analysis task as the ``sends``th message of the analysis."""
    app.send_task(ANALYZE_TASK, args=[job_id, params, sends], queue=queues.ANALYSIS)


def start(jobs: Jobs, job_id: str, sends: int | None) -> bool:
    """Mark the analysis running if it is queued and ``sends`` is its latest message's count
    (None: a message from before the count, taken as the latest); False for a stale copy."""
    script = jobs.r.register_script(_START)
    return bool(script(keys=[job_key(job_id)], args=[time.time(), "" if sends is None else sends]))


def beat_interval() -> float:
    """Seconds between a running analysis's heartbeats: a quarter of POSEQUEUE_INGEST_STALL,
    after which the watchdog takes a silent analysis for lost (0.25 to 15 s)."""
    return max(0.25, min(15.0, get_settings().ingest_stall / 4))


def unlist(jobs: Jobs, job_id: str) -> bool:
    """Take an ended analysis (or one whose job's record is gone) off the watchdog's list,
    unless it was asked for again since the caller looked; True if taken off."""
    script = jobs.r.register_script(_UNLIST)
    return bool(script(keys=[job_key(job_id), ANALYSES], args=[job_id]))


class Superseded(Exception):
    """This run of an analysis is no longer the one its record asks for."""


def _beat(jobs: Jobs, job_id: str, sends: int | None) -> bool:
    """Write the heartbeat of the run of the ``sends``th message if it is still the current
    run (``_BEAT``); False if it is not."""
    script = jobs.r.register_script(_BEAT)
    return bool(script(keys=[job_key(job_id)], args=[time.time(), "" if sends is None else sends]))


def still_current(jobs: Jobs, job_id: str, sends: int | None) -> None:
    """Raise ``Superseded`` unless the analysis is running as its ``sends``th message (any,
    for a message without a number), beating if it is: a run checks before each output it
    writes, so a superseded run does not write over the newer run's files."""
    if not _beat(jobs, job_id, sends):
        raise Superseded(f"analysis of job {job_id} was asked for again or ended")


@contextlib.contextmanager
def beating(jobs: Jobs, job_id: str, sends: int | None, interval: float | None = None) -> Iterator[None]:
    """While the block runs, write the heartbeat (``analysis_beat_at``) of the analysis
    running as its ``sends``th message every ``interval`` seconds, from a thread: the
    watchdog's sign that its process lives (a worker killed mid-analysis stops beating;
    nothing else would tell). A superseded run beats no more."""
    every = beat_interval() if interval is None else interval
    stopped = threading.Event()

    def run() -> None:
        while not stopped.wait(every):
            try:
                if not _beat(jobs, job_id, sends):
                    log.info("analysis.superseded", job_id=job_id, sends=sends)
                    return
            except Exception as exc:  # Redis restarting: the next beat tries again
                log.warning("analysis.beat_failed", job_id=job_id, error=str(exc))

    thread = threading.Thread(target=run, name="posequeue-analysis-beat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stopped.set()
        thread.join(timeout=5)


def wait(jobs: Jobs, job_id: str, poll: float = 0.5, timeout: float | None = None) -> dict[str, Any]:
    """Poll until the job's analysis ends (or the timeout passes); return its summary
    (``Job.analysis_summary``: {} when the job has none)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        job = jobs.get(job_id)
        if job.analysis is None or job.analysis.finished:
            return job.analysis_summary()
        if deadline is not None and time.monotonic() > deadline:
            return job.analysis_summary()
        time.sleep(poll)
