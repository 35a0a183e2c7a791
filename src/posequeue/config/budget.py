"""One memory budget for the payloads of every job together (``POSEQUEUE_MAX_REDIS_MB``).

Every batch hash's bytes (its meta and payloads, measured as stored, whatever the codec) are
reserved in a ledger on the broker before the batch is stored, and released when its payload
leaves Redis. The ledger admits payloads up to ``limit_bytes``: three quarters of the setting,
the last quarter left for what Redis holds beside the stored batches (a batch being read sits
in its reader's output buffer as a second copy, and queues, records and results take a few MB).

Fairness, two rules:

- Equal shares: a job may hold at most ``limit / competing jobs`` (jobs holding bytes, and
  jobs refused within the last ``WAITING_SECONDS``), but always one batch: a job holding
  nothing may take a batch that fits in what is free. A long video that holds the whole
  ledger when a short one arrives is refused more as its batches finish, while the short one
  takes the freed bytes, until each holds its share.
- First come, first served among the refused when room is scarce: a job is refused while
  another job has been waiting longer, holds no more than it does, and would then no longer
  find room for its next batch, so when free bytes are scarce (shares smaller than a batch:
  more jobs than batches fit) jobs take turns in the order they were first refused instead of
  racing for each freed batch; room enough for both goes to whoever asks.

The limit is never exceeded by an admission (``force`` replays of already decided work
excepted, see ``acquire``).

Release is atomic with the payload's removal (one Lua script deletes the batch hash and its
reservation); a stage hand-over sets the reservation to the bytes the hash holds afterwards; a
failed or cancelled job's batch hashes are deleted with their reservations. A reservation has
a lease that ends with its payload's TTL: one whose holder died before storing or releasing it
(an ingest killed between the two, a hash that expired) lapses then, at the latest; and each
admission first releases the reservations made more than ``STORE_GRACE_SECONDS`` ago whose
batch hash no longer exists (deleted by something that did not release it, e.g. a process of
an older version), so the ledger heals from the keys themselves.

The scripts delete, rewrite and look for batch hashes on the broker, where they live by
default. With payload servers (``POSEQUEUE_PAYLOAD_URLS``) the ledger stays on the broker:
``Jobs`` deletes a hash there, then releases its reservation (not atomically), and the heal
from missing hashes is off (the scripts cannot see the servers): a reservation whose holder
died lapses with its lease.

Keys (``config/keys.py``): ``pq:budget:held`` (batch key -> bytes), ``pq:budget:leases``
(batch key -> lease end, unix seconds), ``pq:budget:jobs`` (job id -> bytes held),
``pq:budget:waiting`` (job id -> when it was first refused), ``pq:budget:tried`` (job id ->
when it was last refused), ``pq:budget:last`` (job id ->
bytes of its last batch, the size a job asks for before it decodes), ``pq:budget:peak`` (the
most the ledger has held, for monitoring and tests), ``pq:budget:since`` (batch key -> when
it was reserved).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from posequeue.config.keys import (
    BUDGET_HELD,
    BUDGET_JOBS,
    BUDGET_LAST,
    BUDGET_LEASES,
    BUDGET_PEAK,
    BUDGET_SINCE,
    BUDGET_TRIED,
    BUDGET_WAITING,
    batch_key,
)

PAYLOAD_SHARE = 0.75  # of POSEQUEUE_MAX_REDIS_MB that stored payloads may take
WAITING_SECONDS = 30  # a refused job competes for this long after its last try
STORE_GRACE_SECONDS = 30  # a reservation whose batch hash is missing after this was never stored
NEVER = 1e12  # a grace no reservation outlives (Lua's tonumber reads no infinity)
_KEYS = [
    BUDGET_HELD,
    BUDGET_LEASES,
    BUDGET_JOBS,
    BUDGET_WAITING,
    BUDGET_LAST,
    BUDGET_PEAK,
    BUDGET_TRIED,
    BUDGET_SINCE,
]

# Shared head of the scripts: the ledger's keys and the release of one reservation (which
# also deletes the batch hash when ``drop`` is true). Lapsed leases are released first.
_HEAD = """
local held, leases, jobs, waiting = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local last, peak, tried, since = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local now = tonumber(ARGV[1])
local function job_of(key) return string.match(key, ':batch:(.+):[^:]+$') end
local function release(key, drop)
  local b = redis.call('HGET', held, key)
  if b then
    local j = job_of(key)
    if redis.call('HINCRBY', jobs, j, -tonumber(b)) <= 0 then redis.call('HDEL', jobs, j) end
    redis.call('HDEL', held, key)
  end
  redis.call('ZREM', leases, key)
  redis.call('ZREM', since, key)
  if drop then redis.call('DEL', key) end
end
for _, key in ipairs(redis.call('ZRANGEBYSCORE', leases, '-inf', now)) do release(key, false) end
"""

# ARGV: now, job, batch key ('' to ask only), bytes, lease end, limit, waiting seconds, force,
# grace (seconds a reservation may wait for its hash).
# Returns {admitted (0/1), bytes held by all jobs, this job's share}.
_ACQUIRE = (
    _HEAD
    + """
local job, key, bytes, lease = ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local limit, live, force = tonumber(ARGV[6]), tonumber(ARGV[7]), ARGV[8] == '1'
-- Reservations made more than a grace ago whose batch hash is gone: deleted without a release
-- (by a process of an older version, or one that deleted keys by pattern). Younger ones may
-- not be stored yet.
for _, k in ipairs(redis.call('ZRANGEBYSCORE', since, '-inf', now - tonumber(ARGV[9]))) do
  if redis.call('EXISTS', k) == 0 then release(k, false) end
end
local old = 0
if key ~= '' then old = tonumber(redis.call('HGET', held, key) or '0') end
local total, competing, n = 0, {[job] = true}, 1
local all = redis.call('HGETALL', jobs)
for i = 1, #all, 2 do
  total = total + tonumber(all[i + 1])
  if not competing[all[i]] then competing[all[i]] = true; n = n + 1 end
end
local mine = tonumber(redis.call('HGET', jobs, job) or '0')
local my_turn = tonumber(redis.call('ZSCORE', waiting, job) or now)
local grow = bytes - old
-- A job waiting longer than this one, holding no more than it, whose next batch (its last
-- size, or this one's) would no longer fit if this one were admitted: its turn comes first.
local ahead = false
local queue = redis.call('ZRANGE', waiting, 0, -1, 'WITHSCORES')
for i = 1, #queue, 2 do
  local j, first = queue[i], tonumber(queue[i + 1])
  if tonumber(redis.call('HGET', tried, j) or '0') < now - live then
    redis.call('ZREM', waiting, j)
    redis.call('HDEL', tried, j)
  else
    if not competing[j] then competing[j] = true; n = n + 1 end
    if j ~= job and first < my_turn and tonumber(redis.call('HGET', jobs, j) or '0') <= mine then
      local need = tonumber(redis.call('HGET', last, j) or bytes)
      if total + grow + need > limit then ahead = true end
    end
  end
end
local share = math.floor(limit / n)
if not force and old == 0 and (total + grow > limit or (mine > 0 and mine + grow > share) or ahead) then
  redis.call('ZADD', waiting, 'NX', now, job)
  redis.call('HSET', tried, job, now)
  return {0, total, share}
end
if key == '' then return {1, total, share} end
redis.call('ZREM', waiting, job)
redis.call('HDEL', tried, job)
redis.call('HSET', held, key, bytes)
redis.call('HINCRBY', jobs, job, grow)
redis.call('ZADD', leases, lease, key)
if old == 0 then redis.call('ZADD', since, now, key) end
redis.call('HSET', last, job, bytes)
if total + grow > tonumber(redis.call('GET', peak) or '0') then redis.call('SET', peak, total + grow) end
return {1, total + grow, share}
"""
)

# ARGV: now, batch key. Deletes the batch hash and releases its reservation.
_DROP = _HEAD + "release(ARGV[2], true)\nreturn 1\n"

# ARGV: now, batch key, number of fields to delete, those fields, then field/value pairs to
# set. The stage hand-over: a hash already deleted (the batch finished or its job ended) is
# not recreated; the reservation becomes the bytes the hash holds afterwards.
_ADVANCE = (
    _HEAD
    + """
local key, ndrop = ARGV[2], tonumber(ARGV[3])
if redis.call('EXISTS', key) == 0 then return 0 end
local set = {}
for i = 4 + ndrop, #ARGV do set[#set + 1] = ARGV[i] end
if #set > 0 then redis.call('HSET', key, unpack(set)) end
for i = 4, 3 + ndrop do redis.call('HDEL', key, ARGV[i]) end
local old = redis.call('HGET', held, key)
if old then
  local size = 0
  for _, f in ipairs(redis.call('HKEYS', key)) do size = size + redis.call('HSTRLEN', key, f) end
  redis.call('HSET', held, key, size)
  redis.call('HINCRBY', jobs, job_of(key), size - tonumber(old))
end
return 1
"""
)

# ARGV: now, job id. A job that ended: its batch hashes go with their reservations.
_RELEASE_JOB = (
    _HEAD
    + """
local prefix, n = ARGV[2], 0
local keys = redis.call('HKEYS', held)
for _, key in ipairs(keys) do
  if job_of(key) == prefix then release(key, true); n = n + 1 end
end
redis.call('HDEL', jobs, prefix)
redis.call('HDEL', last, prefix)
redis.call('ZREM', waiting, prefix)
redis.call('HDEL', tried, prefix)
return n
"""
)


@dataclass(frozen=True)
class Admission:
    """The ledger's answer to a request."""

    admitted: bool
    held: int  # bytes reserved by every job together, this request included when admitted
    share: int  # the most the asking job may hold while the others compete


def _admission(reply: list[int]) -> Admission:
    admitted, held, share = reply
    return Admission(bool(admitted), int(held), int(share))


class Budget:
    """The payload ledger of one broker (every producer and worker of a fleet shares it)."""

    def __init__(
        self, client: Any, limit_bytes: int, store_grace: float | None = STORE_GRACE_SECONDS
    ) -> None:
        """``store_grace`` None: never release a reservation because its hash is missing from
        the broker (the hashes live on payload servers, which the scripts cannot see)."""
        self.r, self.limit = client, limit_bytes
        self.grace = NEVER if store_grace is None else store_grace
        self._acquire = client.register_script(_ACQUIRE)
        self._drop = client.register_script(_DROP)
        self._advance = client.register_script(_ADVANCE)
        self._release_job = client.register_script(_RELEASE_JOB)

    @staticmethod
    def limit_for(max_redis_mb: int) -> int:
        """Bytes of stored payloads a ``POSEQUEUE_MAX_REDIS_MB`` setting admits."""
        return int(max_redis_mb * 2**20 * PAYLOAD_SHARE)

    def acquire(self, job_id: str, index: int, nbytes: int, lease_s: int, force: bool = False) -> Admission:
        """Reserve ``nbytes`` for batch ``index`` of the job before it is stored. A batch that
        already holds a reservation (a redelivered segment storing it again) is admitted and
        its reservation set to ``nbytes``. ``force``: admit whatever the ledger holds, for a
        replay of a segment whose extent was already decided (its batches were admitted once)."""
        key, now = batch_key(job_id, index), time.time()
        args = [now, job_id, key, nbytes, now + lease_s, self.limit, WAITING_SECONDS, int(force), self.grace]
        return _admission(self._acquire(_KEYS, args))

    def fits(self, job_id: str, nbytes: int) -> Admission:
        """Would a batch of ``nbytes`` be admitted now? Reserves nothing; a refusal counts the
        job as waiting (it competes for the ledger's share from then on)."""
        args = [time.time(), job_id, "", nbytes, 0, self.limit, WAITING_SECONDS, 0, self.grace]
        return _admission(self._acquire(_KEYS, args))

    def last_batch_bytes(self, job_id: str) -> int:
        """Bytes of the job's last admitted batch (0 before its first)."""
        return int(self.r.hget(BUDGET_LAST, job_id) or 0)

    def drop(self, job_id: str, index: int) -> None:
        """Delete batch ``index``'s hash and release its reservation, atomically."""
        self._drop(_KEYS, [time.time(), batch_key(job_id, index)])

    def advance(self, job_id: str, index: int, payload: dict[str, bytes], drop: list[str]) -> bool:
        """Stage hand-over: set ``payload``, delete ``drop``, reserve what the hash then holds.
        False (nothing written) when the hash is gone: the batch finished or its job ended."""
        args: list[Any] = [time.time(), batch_key(job_id, index), len(drop), *drop]
        for name, value in payload.items():
            args += [name, value]
        return bool(self._advance(_KEYS, args))

    def release_job(self, job_id: str) -> int:
        """Delete the job's stored batches and release their reservations; how many there were."""
        return int(self._release_job(_KEYS, [time.time(), job_id]))

    def peak(self) -> int:
        """The most bytes the ledger has held at once (since ``reset_peak``)."""
        return int(self.r.get(BUDGET_PEAK) or 0)

    def reset_peak(self) -> None:
        self.r.delete(BUDGET_PEAK)

    def report(self) -> dict[str, Any]:
        """The ledger for ``posequeue queues``: limit, held, peak (MiB), jobs waiting their turn."""
        held = self.held()
        waiting = [j.decode() for j in self.r.zrange(BUDGET_WAITING, 0, -1)]
        mib = 2**20
        return {
            "limit_mb": round(self.limit / mib, 1),
            "held_mb": round(sum(held.values()) / mib, 1),
            "peak_mb": round(self.peak() / mib, 1),
            "jobs_holding": len(held),
            "jobs_waiting": waiting,
        }

    def held(self) -> dict[str, int]:
        """Bytes held per job (after lapsed leases are released)."""
        self._drop(_KEYS, [time.time(), ""])  # each script releases lapsed leases first
        return {k.decode(): int(v) for k, v in self.r.hgetall(BUDGET_JOBS).items()}
