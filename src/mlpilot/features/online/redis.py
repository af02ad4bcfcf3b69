"""Online store on Redis: one hash per (view, entity key) under a key prefix.

Conditional upserts run in a Lua script so "never overwrite a newer row" holds even with concurrent writers.

    >>> store = RedisOnlineStore.from_url("redis://127.0.0.1:6379/0?prefix=myproject:")  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from mlpilot.errors import MissingDependencyError, StoreError
from mlpilot.features.online.base import StoredRow

__all__ = ["DEFAULT_PREFIX", "RedisOnlineStore"]

DEFAULT_PREFIX = "mlpilot:features:"
# Rows (keys) per script call: bounds the script's run time (Redis is single-threaded) and the argument list.
_WRITE_CHUNK = 1000
_READ_CHUNK = 1000

# KEYS: row keys..., watermark key (last). ARGV: watermark ("" for none), then (event_time, available_at,
# payload) per row. Times are compared as Lua numbers (doubles): exact for microsecond epochs until year 2255.
_UPSERT_LUA = """
local n = #KEYS - 1
for i = 1, n do
  local b = 1 + (i - 1) * 3
  local et = tonumber(ARGV[b + 1])
  local av = tonumber(ARGV[b + 2])
  local cur = redis.call('HMGET', KEYS[i], 'e', 'a')
  local ce = tonumber(cur[1])
  if (not ce) or et > ce or (et == ce and av >= tonumber(cur[2])) then
    redis.call('HSET', KEYS[i], 'e', ARGV[b + 1], 'a', ARGV[b + 2], 'p', ARGV[b + 3])
  end
end
if ARGV[1] ~= '' then
  local old = tonumber(redis.call('GET', KEYS[#KEYS]))
  if (not old) or tonumber(ARGV[1]) > old then
    redis.call('SET', KEYS[#KEYS], ARGV[1])
  end
end
return n
"""

# KEYS: row keys. ARGV: the oldest event time to return ("" for any). One payload (or nil) per key, in order: a
# lookup is one command and one reply, whatever the number of entities.
_PAYLOADS_LUA = """
local since = tonumber(ARGV[1])
local out = {}
for i = 1, #KEYS do
  local row = redis.call('HMGET', KEYS[i], 'e', 'p')
  if row[1] and ((not since) or tonumber(row[1]) >= since) then
    out[i] = row[2]
  else
    out[i] = false
  end
end
return out
"""


class RedisOnlineStore:
    """Online store in Redis. ``prefix`` namespaces every key (one project, or one test, per prefix)."""

    def __init__(self, client: Any, *, prefix: str = DEFAULT_PREFIX) -> None:
        self._client = client
        self.prefix = prefix
        self._upsert = client.register_script(_UPSERT_LUA)
        self._payloads = client.register_script(_PAYLOADS_LUA)
        self._errors: tuple[type[BaseException], ...] = _redis_errors()

    @classmethod
    def from_url(cls, url: str) -> RedisOnlineStore:
        """``redis://[:password@]host:port/db[?prefix=...]`` (also ``rediss://`` and ``unix://``)."""
        try:
            import redis
        except ImportError as exc:
            raise MissingDependencyError("redis", "redis") from exc
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        prefix = next((v for k, v in query if k == "prefix"), DEFAULT_PREFIX)
        rest = urlencode([(k, v) for k, v in query if k != "prefix"])
        client = redis.Redis.from_url(urlunsplit(parts._replace(query=rest)))
        return cls(client, prefix=prefix)

    def _row_key(self, view: str, entity_key: str) -> str:
        return f"{self.prefix}v:{view}:{entity_key}"

    def _watermark_key(self, view: str) -> str:
        return f"{self.prefix}w:{view}"

    def write_batch(self, view: str, rows: Sequence[StoredRow], *, watermark: int | None = None) -> None:
        wm_key = self._watermark_key(view)
        try:
            for start in range(0, max(len(rows), 1), _WRITE_CHUNK):
                chunk = rows[start : start + _WRITE_CHUNK]
                last = start + _WRITE_CHUNK >= len(rows)
                keys = [self._row_key(view, r.entity_key) for r in chunk]
                keys.append(wm_key)
                args: list[Any] = ["" if watermark is None or not last else str(watermark)]
                for r in chunk:
                    args.extend((r.event_time, r.available_at, r.payload))
                self._upsert(keys=keys, args=args)
        except self._errors as exc:
            raise StoreError(f"online store redis: write failed: {exc}") from exc

    def read(self, view: str, entity_keys: Sequence[str]) -> list[StoredRow | None]:
        try:
            if len(entity_keys) == 1:
                values = [self._client.hmget(self._row_key(view, entity_keys[0]), "e", "a", "p")]
            else:
                pipe = self._client.pipeline(transaction=False)
                for key in entity_keys:
                    pipe.hmget(self._row_key(view, key), "e", "a", "p")
                values = pipe.execute()
        except self._errors as exc:
            raise StoreError(f"online store redis: read failed: {exc}") from exc
        return [
            None if v[0] is None else StoredRow(key, int(v[0]), int(v[1]), v[2])
            for key, v in zip(entity_keys, values, strict=True)
        ]

    def read_payloads(
        self, view: str, entity_keys: Sequence[str], *, min_event_time: int | None = None
    ) -> list[bytes | None]:
        """Each key's payload, or ``None`` (no row, or ``event_time < min_event_time``), from one script call per
        1,000 keys (times compared as in the upsert script)."""
        base = f"{self.prefix}v:{view}:"
        since = "" if min_event_time is None else str(min_event_time)
        out: list[bytes | None] = []
        try:
            if len(entity_keys) == 1:  # one plain HMGET costs less than a script call
                event_time, payload = self._client.hmget(base + entity_keys[0], "e", "p")
                fresh = event_time is not None and (min_event_time is None or int(event_time) >= min_event_time)
                return [payload if fresh else None]
            for start in range(0, len(entity_keys), _READ_CHUNK):
                keys = [base + key for key in entity_keys[start : start + _READ_CHUNK]]
                out.extend(self._payloads(keys=keys, args=[since]))
        except self._errors as exc:
            raise StoreError(f"online store redis: read failed: {exc}") from exc
        return out

    def read_watermark(self, view: str) -> int | None:
        try:
            value = self._client.get(self._watermark_key(view))
        except self._errors as exc:
            raise StoreError(f"online store redis: read failed: {exc}") from exc
        return None if value is None else int(value)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> RedisOnlineStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RedisOnlineStore(prefix={self.prefix!r})"


def _redis_errors() -> tuple[type[BaseException], ...]:
    import redis

    return (redis.RedisError,)
