"""Check-in write buffer in Redis, drained into PostgreSQL in batches.

The steady-state check-in (no open deployment, same installed versions) does not write to
PostgreSQL: one Lua script call does the sequence-number idempotency check and appends the
report to a Redis list; `checkin_flush` (Celery beat, every FLEET["CHECKIN_FLUSH_S"]) moves
bounded batches into `fleet_healthreport` and `fleet_device`.

Guarantees (see docs/performance.md, "Check-in write buffer"):

- A buffered report is in PostgreSQL within about one flush interval while a worker and beat run.
- Flushing is idempotent: a batch is moved atomically to an in-flight list, written in one
  transaction (health rows `ON CONFLICT DO NOTHING`, device counters only for rows actually
  inserted, `last_seq`/`last_seen` with GREATEST) and removed after commit; a crashed flush is
  retried from the in-flight list and never double counts. A Redis lock keeps flushers apart.
- If Redis loses its data (crash without persistence, FLUSHALL), the reports not yet flushed
  are lost: at most one flush interval plus one batch of check-ins. The devices' sequence
  numbers fall back to PostgreSQL's `last_seq`, so later reports are still counted once.
"""

import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings
from django.db import connection, transaction

log = logging.getLogger(__name__)

_client = None

# KEYS: seq key, buffer list. ARGV: seq, last_seq from the database, ttl, entry for an
# accepted report ("" to only claim the seq), entry for a duplicate ("" for none).
# Returns {1, previous} when the seq is new (and stored), {0, previous} for a duplicate.
# Sequence numbers are compared as decimal strings: they may exceed Lua's 2^53.
CLAIM_LUA = """
local function gt(a, b)
  local na, nb = string.sub(a, 1, 1) == '-', string.sub(b, 1, 1) == '-'
  if na ~= nb then return nb end
  if na then a = string.sub(a, 2); b = string.sub(b, 2) end
  local r
  if #a ~= #b then r = #a > #b elseif a == b then return false else r = a > b end
  if na then return not r end
  return r
end
local current = redis.call('GET', KEYS[1]) or ARGV[2]
if not gt(ARGV[1], current) then
  if ARGV[5] ~= '' then redis.call('LPUSH', KEYS[2], ARGV[5]) end
  return {0, current}
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[3]))
if ARGV[4] ~= '' then redis.call('LPUSH', KEYS[2], ARGV[4]) end
return {1, current}
"""

# Undo a claim whose database write failed, if nothing newer was claimed since.
RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', tonumber(ARGV[3]))
  return 1
end
return 0
"""

# KEYS: buffer, in-flight list. ARGV: batch size. Moves the oldest entries to the in-flight
# list (or returns what a crashed flush left there) in one atomic step.
TAKE_LUA = """
local inflight = redis.call('LRANGE', KEYS[2], 0, -1)
if #inflight > 0 then return inflight end
local items = redis.call('RPOP', KEYS[1], tonumber(ARGV[1]))
if not items then return {} end
redis.call('RPUSH', KEYS[2], unpack(items))
return items
"""

_scripts: dict[str, object] = {}


class BufferUnavailable(Exception):
    """Redis could not take the check-in; the caller falls back to the synchronous path."""


_warned_at = 0.0
_down_until = 0.0


def warn_unavailable() -> None:
    """Log that check-ins fall back to the synchronous path, at most every 10 s per process."""
    global _warned_at
    if time.monotonic() - _warned_at > 10:
        _warned_at = time.monotonic()
        log.warning("check-in buffer (Redis) unavailable: recording check-ins synchronously")


def enabled() -> bool:
    """The buffer runs on PostgreSQL (the flusher's SQL is PostgreSQL's); off for SQLite (the demo)."""
    wanted = settings.FLEET.get("CHECKIN_BUFFER", True)
    return bool(wanted) and connection.vendor == "postgresql"


def client():
    global _client
    if _client is None:
        import redis

        timeout = settings.FLEET.get("CHECKIN_REDIS_TIMEOUT_S", 0.5)
        _client = redis.Redis.from_url(
            settings.FLEET.get("CHECKIN_REDIS_URL") or settings.REDIS_URL,
            socket_timeout=timeout, socket_connect_timeout=timeout, health_check_interval=30,
        )
    return _client


def reset_client() -> None:
    global _client, _down_until
    _client = None
    _down_until = 0.0
    _scripts.clear()


def _script(name: str, source: str):
    script = _scripts.get(name)
    if script is None:
        script = _scripts[name] = client().register_script(source)
    return script


def _prefix() -> str:
    return f"{settings.CACHES['default'].get('KEY_PREFIX', 'fleetweb')}:ci"


def buffer_key() -> str:
    return f"{_prefix()}:buf"


def inflight_key() -> str:
    return f"{_prefix()}:inflight"


def seq_key(device_id: int) -> str:
    return f"{_prefix()}:seq:{device_id}"


def _ttl() -> int:
    return int(settings.FLEET.get("CHECKIN_SEQ_TTL_S", 3600))


def seq_claim(*, device_id: int, seq: int, db_last_seq: int, entry: str = "", duplicate_entry: str = "") -> tuple[bool, int]:
    """Claim `seq` for the device (atomic, one round trip); optionally buffer the report with it.

    Returns (new, previous seq). Raises BufferUnavailable when Redis does not answer, and
    at once for the next FLEET["CHECKIN_REDIS_RETRY_S"] seconds after that (per process), so an
    outage costs one timeout, not one per check-in.
    """
    global _down_until
    if time.monotonic() < _down_until:
        raise BufferUnavailable("Redis failed a moment ago")
    try:
        new, previous = _script("claim", CLAIM_LUA)(
            keys=[seq_key(device_id), buffer_key()],
            args=[str(seq), str(db_last_seq), _ttl(), entry, duplicate_entry],
        )
    except Exception as exc:  # any Redis failure means "not buffered"
        _down_until = time.monotonic() + settings.FLEET.get("CHECKIN_REDIS_RETRY_S", 5.0)
        raise BufferUnavailable(str(exc)) from exc
    return bool(new), int(previous)


def seq_release(*, device_id: int, seq: int, previous: int) -> None:
    """Give a claimed seq back (the database write it was for failed), so a retry is not a duplicate."""
    try:
        _script("release", RELEASE_LUA)(keys=[seq_key(device_id)], args=[str(seq), str(previous), _ttl()])
    except Exception:
        log.warning("could not release check-in seq %s of device %s", seq, device_id, exc_info=True)


def entry_accepted(*, device_id: int, seq: int, received_at: float, interval_s: int, combination_id: int | None,
                   health: dict[str, int], extra: dict[str, int], attributes: dict | None) -> str:
    return json.dumps([
        device_id, seq, received_at, interval_s, combination_id,
        health.get("crashes", 0), health.get("failed_health_checks", 0), health.get("reboots", 0),
        health.get("app_restarts", 0), extra or {}, attributes,
    ], separators=(",", ":"))


def entry_duplicate(*, device_id: int, received_at: float) -> str:
    return json.dumps([device_id, None, received_at], separators=(",", ":"))


def depth() -> int:
    """Entries waiting to be flushed (buffer + in-flight)."""
    pipe = client().pipeline(transaction=False)
    pipe.llen(buffer_key())
    pipe.llen(inflight_key())
    waiting, inflight = pipe.execute()
    return int(waiting) + int(inflight)


def oldest_age_s() -> float:
    """Seconds since the oldest unflushed check-in was received (0 when nothing waits)."""
    redis_client = client()
    oldest = redis_client.lindex(inflight_key(), 0) or redis_client.lindex(buffer_key(), -1)
    if not oldest:
        return 0.0
    return max(0.0, time.time() - float(json.loads(oldest)[2]))


@dataclass
class FlushResult:
    taken: int = 0
    health_rows: int = 0
    devices: int = 0
    batches: int = 0
    remaining: int = 0
    locked_out: bool = False


HEALTH_SQL = """
INSERT INTO fleet_healthreport (device_id, seq, received_at, interval_s, combination_id, crashes,
                                failed_health_checks, reboots, app_restarts, extra)
SELECT v.device_id, v.seq, v.received_at, v.interval_s,
       (SELECT c.id FROM fleet_combination c WHERE c.id = v.combination_id),
       v.crashes, v.fhc, v.reboots, v.app_restarts, v.extra::jsonb
FROM unnest(%s::bigint[], %s::bigint[], %s::timestamptz[], %s::integer[], %s::bigint[], %s::integer[],
            %s::integer[], %s::integer[], %s::integer[], %s::text[])
     AS v(device_id, seq, received_at, interval_s, combination_id, crashes, fhc, reboots, app_restarts, extra)
WHERE EXISTS (SELECT 1 FROM fleet_device d WHERE d.id = v.device_id)
ON CONFLICT (device_id, seq) DO NOTHING
RETURNING device_id
"""

DEVICE_SQL = """
UPDATE fleet_device d SET
    last_seq = GREATEST(d.last_seq, v.seq),
    last_seen = GREATEST(d.last_seen, v.seen),
    checkin_count = d.checkin_count + v.n,
    attributes = CASE WHEN v.attrs IS NULL THEN d.attributes
                      WHEN v.seq > d.last_seq THEN d.attributes || v.attrs::jsonb
                      ELSE v.attrs::jsonb || d.attributes END
FROM (SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::timestamptz[], %s::integer[], %s::text[])
      AS u(id, seq, seen, n, attrs) ORDER BY id) AS v
WHERE d.id = v.id
"""


def _write(entries: list[list]) -> tuple[int, int]:
    """Write one batch in one transaction; returns (health rows inserted, devices updated)."""
    health = [e for e in entries if e[1] is not None]
    cols: list[list] = [[] for _ in range(10)]
    for e in health:
        cols[0].append(e[0])
        cols[1].append(e[1])
        cols[2].append(datetime.fromtimestamp(e[2], UTC))
        cols[3].append(e[3])
        cols[4].append(e[4])
        cols[5].append(e[5])
        cols[6].append(e[6])
        cols[7].append(e[7])
        cols[8].append(e[8])
        cols[9].append(json.dumps(e[9]))
    with transaction.atomic(), connection.cursor() as cursor:
        inserted: dict[int, int] = {}
        if health:
            cursor.execute(HEALTH_SQL, cols)
            for (device_id,) in cursor.fetchall():
                inserted[device_id] = inserted.get(device_id, 0) + 1
        # Per device: highest seq, latest sighting, reports counted, attributes merged in seq order.
        devices: dict[int, list] = {}
        for e in sorted(entries, key=lambda e: (e[0], -1 if e[1] is None else e[1])):
            row = devices.setdefault(e[0], [e[0], -1, e[2], 0, None])
            row[2] = max(row[2], e[2])
            if e[1] is not None:
                row[1] = max(row[1], e[1])
                if len(e) > 10 and e[10]:
                    row[4] = {**(row[4] or {}), **e[10]}
        for device_id, n in inserted.items():
            devices[device_id][3] = n
        rows = [devices[k] for k in sorted(devices)]
        cursor.execute(DEVICE_SQL, [
            [r[0] for r in rows], [r[1] for r in rows], [datetime.fromtimestamp(r[2], UTC) for r in rows],
            [r[3] for r in rows], [None if r[4] is None else json.dumps(r[4]) for r in rows],
        ])
        updated = cursor.rowcount
    return sum(inserted.values()), updated


def checkin_flush(*, batch: int | None = None, max_batches: int = 1, budget_s: float = 5.0) -> FlushResult:
    """Drain buffered check-ins into PostgreSQL, at most `max_batches` batches of `batch` entries.

    Safe to call from several processes at once (a Redis lock keeps one flusher at a time) and
    after a crash (the in-flight batch is written again, idempotently). Tests call it to make
    buffered check-ins visible synchronously.
    """
    from apps.live.broadcast import fleet_changed

    batch = batch or int(settings.FLEET.get("CHECKIN_FLUSH_BATCH", 5000))
    result = FlushResult()
    redis_client = client()
    lock = redis_client.lock(f"{_prefix()}:flush-lock", timeout=max(30.0, budget_s * 6), blocking=False)
    if not lock.acquire():
        result.locked_out = True
        return result
    started = time.monotonic()
    try:
        take = _script("take", TAKE_LUA)
        while result.batches < max_batches and time.monotonic() - started < budget_s:
            raw = take(keys=[buffer_key(), inflight_key()], args=[batch])
            if not raw:
                break
            entries = [json.loads(item) for item in raw]
            rows, devices = _write(entries)
            redis_client.delete(inflight_key())
            result.taken += len(entries)
            result.health_rows += rows
            result.devices += devices
            result.batches += 1
        result.remaining = int(redis_client.llen(buffer_key()))
    finally:
        try:
            lock.release()
        except Exception:  # noqa: BLE001 - expired: another flusher may run; writes are idempotent
            log.warning("check-in flush lock expired before release")
    if result.health_rows:
        from apps.ops.metrics import record_checkin_flush

        record_checkin_flush(result.health_rows)
        fleet_changed()
    return result
