"""RedisBus: tasks on Redis Streams with consumer groups, results on per-orchestrator streams, live events
through pub/sub.

- Routing: one stream per (agent, lane), `Keys.task_stream`; every worker of every agent is a consumer of
  the group `workers`, so a task goes to exactly one live worker.
- Priorities: a worker takes the next task with a server-side script that looks at the head of each of its
  streams and picks the highest *effective* lane. Starvation: a task's effective lane rises by one per
  `aging_period_s` it has waited (capped one above CRITICAL, oldest first), so a steady flood of CRITICAL
  work delays LOW work by at most ~4 aging periods; it never starves it forever. Inside a lane the order
  is FIFO (the critical-path rank that LocalBus also uses inside a lane is not kept on Redis); a step re-sent
  after its lease comes one lane up from the engine, so fixes outrank new work.
- At-least-once, effect once: a delivered task stays pending (in the group's PEL) until `ack`, which the
  worker calls after the result is recorded. A live worker touches its in-flight entries every
  `claim_idle_s / 3` so nobody steals them; a worker that died leaves them idle, and any worker claims
  them with XAUTOCLAIM after `claim_idle_s`. The ledger answers duplicates. If Redis loses everything, the
  engine re-sends the step when its lease runs out (see `StepRunner.dispatch`); groups are re-created on
  the fly.
- Redis away (restart): sends and results are retried with backoff for `RETRY_S`; readers reconnect.
- Connections: one `BlockingConnectionPool` (bounded; waits instead of raising past its size).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections import deque
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager, suppress
from typing import Any

import orjson
from redis import exceptions as rexc
from redis.asyncio import BlockingConnectionPool, Redis
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential_jitter

from ..errors import BusError
from ..messages import AgentMessage, Event, Lane, new_id
from ..store.urls import mask_url
from .base import Bus, Delivery, send_lane
from .keys import DEFAULT_PREFIX, GROUP, Keys

log = logging.getLogger(__name__)

AGING_PERIOD_S = 5.0  # same rule as LocalBus
STREAM_MAXLEN = 100_000  # approximate cap of reply / dead-letter streams
RETRY_S = 30.0  # how long a send or a result rides out Redis being away (restarting) before failing
_GONE = (rexc.ConnectionError, rexc.TimeoutError, OSError)

# Picks the next task among KEYS: the highest effective lane (lane + whole aging periods waited, capped at
# CRITICAL + 1), then the oldest; delivers it to ARGV[2] in the group ARGV[1]. One round trip per take.
_PICK = """
local group, consumer, period = ARGV[1], ARGV[2], tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local best, best_eff, best_ms, best_seq = nil, -1, 0, 0
for i, key in ipairs(KEYS) do
  if redis.call('XLEN', key) > 0 then
    local last = nil
    for _, g in ipairs(redis.call('XINFO', 'GROUPS', key)) do
      local name, lastid = nil, nil
      for j = 1, #g, 2 do
        if g[j] == 'name' then name = g[j + 1] elseif g[j] == 'last-delivered-id' then lastid = g[j + 1] end
      end
      if name == group then last = lastid end
    end
    if last == nil then
      redis.call('XGROUP', 'CREATE', key, group, '0')
      last = '0-0'
    end
    local head = redis.call('XRANGE', key, '(' .. last, '+', 'COUNT', 1)
    if #head > 0 then
      local id = head[1][1]
      local dash = string.find(id, '-')
      local ms = tonumber(string.sub(id, 1, dash - 1))
      local seq = tonumber(string.sub(id, dash + 1))
      local eff = tonumber(ARGV[3 + i]) + math.floor(math.max(now - ms, 0) / period)
      if eff > 4 then eff = 4 end
      if best == nil or eff > best_eff or (eff == best_eff and (ms < best_ms or (ms == best_ms and seq < best_seq))) then
        best, best_eff, best_ms, best_seq = key, eff, ms, seq
      end
    end
  end
end
if best == nil then return nil end
local got = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', 1, 'STREAMS', best, '>')
return {best, got[1][2][1]}
"""

# Undelivered tasks in KEYS: stream length minus what is pending (delivered, not yet acked).
_DEPTH = """
local total = 0
for _, key in ipairs(KEYS) do
  local n = redis.call('XLEN', key)
  if n > 0 then
    local p = redis.pcall('XPENDING', key, ARGV[1])
    if type(p) == 'table' and p.err == nil then n = n - tonumber(p[1]) end
    total = total + n
  end
end
return total
"""


def connect(url: str, *, max_connections: int = 64, timeout: float = 20.0) -> Redis:
    """A Redis client on a bounded, blocking pool (redis-py's default pool raises past its size)."""
    pool = BlockingConnectionPool.from_url(url, max_connections=max_connections, timeout=timeout)
    return Redis(connection_pool=pool)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisBus(Bus):
    """The `Bus` on Redis Streams (tasks, results, dead letters) and pub/sub (live events)."""

    name = "redis"

    def __init__(self, url: str, *, prefix: str = DEFAULT_PREFIX, claim_idle_s: float = 30.0,
                 aging_period_s: float = AGING_PERIOD_S, max_connections: int = 64,
                 consumer: str | None = None) -> None:
        super().__init__()
        self.url = url
        self.keys = Keys(prefix)
        self.claim_idle_s = claim_idle_s
        self.aging_period_s = aging_period_s
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}-{new_id()[:6]}"
        self.redis = connect(url, max_connections=max_connections)
        self._pick = self.redis.register_script(_PICK)
        self._depth = self.redis.register_script(_DEPTH)
        self._buffer: deque[Delivery] = deque()  # delivered to us (reclaimed / block-read), not yet handed out
        self._inflight: dict[tuple[str, str], float] = {}  # (stream, id) -> handed out at
        self._grouped: set[str] = set()
        self._recipients: tuple[float, list[str]] = (0.0, [])
        self._last_claim = 0.0
        self._reply_owners: dict[str, str] = {}  # reply stream -> last id read
        self._sent: dict[str, tuple[str, str]] = {}  # correlation id -> (stream, entry id) awaiting a result
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._pubsub: Any = None
        self._closed = False
        self._reply_generation = 0  # the current results reader (a replaced one stops by itself)
        # Set by an orchestrator that runs no worker itself: warn when no live worker serves an agent.
        self.warn_unserved = False
        self._served: tuple[float, list[Any]] = (0.0, [])
        self._warned: set[str] = set()

    # -- life cycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        """Check that Redis answers; fail with one clear line when it does not."""
        try:
            await self.redis.ping()
        except (rexc.ConnectionError, rexc.TimeoutError, OSError) as exc:
            await self.redis.aclose(close_connection_pool=True)
            raise BusError(f"cannot reach Redis at {mask_url(self.url)} ({exc}); start it or unset "
                           "CHIEF_REDIS_URL to use the in-process bus") from exc

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for task in self._tasks.values():
            task.cancel()
        for task in self._tasks.values():
            with suppress(BaseException):
                await task
        self._tasks.clear()
        if self._pubsub is not None:
            with suppress(Exception):
                await self._pubsub.aclose()
        with suppress(Exception):
            if self._reply_owners:  # results nobody will read any more
                await self.redis.delete(*self._reply_owners)
        await super().close()
        await self.redis.aclose(close_connection_pool=True)

    async def _ride_out(self, what: str, call: Any) -> Any:
        """Run `call()`, retrying with backoff and jitter while Redis is unreachable, for `RETRY_S`."""
        try:
            async for attempt in AsyncRetrying(stop=stop_after_delay(RETRY_S), reraise=True,
                                               wait=wait_exponential_jitter(initial=0.05, max=1.0),
                                               retry=retry_if_exception_type(_GONE)):
                with attempt:
                    return await call()
        except _GONE as exc:
            raise BusError(f"{what}: Redis at {mask_url(self.url)} unreachable for {RETRY_S:g} s ({exc})") from exc
        return None  # not reached: the loop returns or raises

    # -- tasks --------------------------------------------------------------------------------------
    async def send(self, message: AgentMessage) -> None:
        if self._closed:
            raise RuntimeError("bus is closed")
        self._listen_for_replies(message.sender)
        if self.warn_unserved:
            await self._check_served(message.recipient)
        stream = self.keys.task_stream(message.recipient, send_lane(message))

        async def push() -> Any:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.xadd(stream, {"m": message.model_dump_json()})
                pipe.sadd(self.keys.recipients, message.recipient)
                return (await pipe.execute())[0]

        entry_id = await self._ride_out(f"sending {message.correlation_id}", push)
        if message.correlation_id in self._replies:
            self._sent[message.correlation_id] = (stream, _text(entry_id))

    async def holds(self, correlation_id: str) -> bool:
        """The task's entry is still in its stream: waiting, or run by a worker (entries go on ack)."""
        where = self._sent.get(correlation_id)
        if where is None:
            return False
        try:
            return bool(await self.redis.xrange(where[0], where[1], where[1]))
        except (rexc.RedisError, OSError):
            return False

    def forget_reply(self, correlation_id: str) -> None:
        self._sent.pop(correlation_id, None)
        super().forget_reply(correlation_id)

    def _resolve_reply(self, message: AgentMessage) -> bool:
        self._sent.pop(message.correlation_id, None)
        return super()._resolve_reply(message)

    async def _check_served(self, recipient: str) -> None:
        from ..scaling import list_workers

        at, workers = self._served
        if time.monotonic() - at > 5.0:
            workers = await list_workers(self.redis, self.keys)
            self._served = (time.monotonic(), workers)
        if recipient not in self._warned and not any(w.serves(recipient) for w in workers):
            self._warned.add(recipient)
            log.warning("no live worker serves agent '%s': its steps wait until one does; start one with "
                        "`chief worker --agents %s` (this process runs none: CHIEF_EMBEDDED_WORKERS=0)",
                        recipient, recipient)

    async def _names(self, recipients: Collection[str] | None) -> list[str]:
        if recipients is not None:
            return sorted(recipients)
        at, names = self._recipients
        if time.monotonic() - at > 1.0:  # "all agents": whatever tasks were ever sent to
            names = sorted(_text(n) for n in await self.redis.smembers(self.keys.recipients))
            self._recipients = (time.monotonic(), names)
        return names

    def _streams(self, names: list[str]) -> tuple[list[str], list[int]]:
        streams, lanes = [], []
        for name in names:
            for lane in sorted(Lane, reverse=True):
                streams.append(self.keys.task_stream(name, lane))
                lanes.append(int(lane))
        return streams, lanes

    async def receive(self, recipients: Collection[str] | None = None, timeout: float | None = None) -> Delivery | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._closed:
            if self._buffer:
                return self._hand_out(self._buffer.popleft())
            streams, lanes = self._streams(await self._names(recipients))
            if streams:
                await self._reclaim(streams)
                if self._buffer:
                    continue
                hit = await self._pick(keys=streams, args=[GROUP, self.consumer, int(self.aging_period_s * 1000), *lanes])
                if hit:
                    return self._hand_out(self._delivery(_text(hit[0]), hit[1]))
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return None
            wait = 1.0 if remaining is None else min(remaining, 1.0)
            if not streams:
                await asyncio.sleep(min(wait, 0.2))  # nothing was ever sent: look again soon
                continue
            await self._block(streams, wait)
        return None

    async def _block(self, streams: list[str], wait: float) -> None:
        """Wait for a new task on any stream (it is delivered to us: kept in the buffer, handed out next)."""
        await self._ensure_groups(streams)
        try:
            got = await self.redis.xreadgroup(GROUP, self.consumer, dict.fromkeys(streams, ">"), count=1,
                                              block=max(int(wait * 1000), 1))
        except rexc.ResponseError as exc:  # NOGROUP, or the stream was deleted (FLUSHALL) while we waited
            log.info("redis bus: re-creating consumer groups (%s)", exc)
            self._grouped.clear()
            return
        for stream, entries in got or []:
            for entry in entries:
                self._buffer.append(self._delivery(_text(stream), entry))

    async def _ensure_groups(self, streams: list[str]) -> None:
        missing = [s for s in streams if s not in self._grouped]
        if not missing:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for stream in missing:
                pipe.xgroup_create(stream, GROUP, id="0", mkstream=True)
            results = await pipe.execute(raise_on_error=False)
        for stream, result in zip(missing, results, strict=True):
            if isinstance(result, Exception) and "BUSYGROUP" not in str(result):
                raise BusError(f"cannot create the consumer group of {stream}: {result}")
            self._grouped.add(stream)

    async def _reclaim(self, streams: list[str]) -> None:
        """Take over tasks that a dead worker left pending for longer than `claim_idle_s` (XAUTOCLAIM)."""
        now = time.monotonic()
        if now - self._last_claim < max(self.claim_idle_s / 4, 0.05):
            return
        self._last_claim = now
        async with self.redis.pipeline(transaction=False) as pipe:
            for stream in streams:
                pipe.xautoclaim(stream, GROUP, self.consumer, int(self.claim_idle_s * 1000), "0-0", count=10)
            results = await pipe.execute(raise_on_error=False)
        claimed = [self._delivery(stream, entry)
                   for stream, result in zip(streams, results, strict=True)
                   if not isinstance(result, Exception) and result
                   for entry in result[1] if entry and entry[1]]
        if not claimed:
            return
        async with self.redis.pipeline(transaction=False) as pipe:  # how often each was delivered
            for d in claimed:
                pipe.xpending_range(d.token[0], GROUP, min=d.token[1], max=d.token[1], count=1)
            counts = await pipe.execute(raise_on_error=False)
        for delivery, count in zip(claimed, counts, strict=True):
            if isinstance(count, list) and count:
                delivery.deliveries = int(count[0].get("times_delivered", 2))
            log.warning("redis bus: reclaimed %s (delivery %d) from a worker that stopped answering",
                        delivery.message.correlation_id, delivery.deliveries)
            self._buffer.append(delivery)

    def _delivery(self, stream: str, entry: Any) -> Delivery:
        entry_id, fields = _text(entry[0]), entry[1]
        if isinstance(fields, list):  # raw script reply: [field, value, ...]
            fields = dict(zip(fields[::2], fields[1::2], strict=False))
        raw = fields.get(b"m", fields.get("m"))
        try:
            if raw is None:
                raise ValueError("no 'm' field")
            message = AgentMessage.model_validate_json(raw)
            return Delivery(message, token=(stream, entry_id))
        except ValueError as exc:
            recipient = stream.removeprefix(self.keys.prefix + ":tasks:").rsplit(":", 1)[0]
            text = " ".join(str(exc).split())[:300]
            placeholder = AgentMessage(sender="unknown", recipient=recipient, type="task",
                                       payload={"raw": {_text(k): _text(v)[:2000] for k, v in fields.items()}},
                                       correlation_id=f"malformed:{stream}:{entry_id}")
            return Delivery(placeholder, token=(stream, entry_id), error=f"malformed message on {stream}: {text}")

    def _hand_out(self, delivery: Delivery) -> Delivery:
        self._inflight[delivery.token] = time.monotonic()
        if "keepalive" not in self._tasks:
            self._tasks["keepalive"] = asyncio.create_task(self._keep_alive(), name="redis-bus-keepalive")
        return delivery

    async def _keep_alive(self) -> None:
        """Touch our in-flight entries so that no other worker reclaims a task we are still running."""
        while not self._closed:
            await asyncio.sleep(max(self.claim_idle_s / 3, 0.02))
            entries = list(self._inflight)
            if not entries:
                continue
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for stream, entry_id in entries:
                        pipe.xclaim(stream, GROUP, self.consumer, 0, [entry_id], justid=True)
                    await pipe.execute(raise_on_error=False)
            except (rexc.RedisError, OSError) as exc:
                log.warning("redis bus: cannot renew in-flight tasks: %s", exc)

    async def abandon(self, delivery: Delivery) -> None:
        """Stop renewing the task: it stays pending and any worker reclaims it after `claim_idle_s`."""
        self._inflight.pop(delivery.token, None)

    async def ack(self, delivery: Delivery) -> None:
        """XACK and delete the entry: the stream then holds only waiting and in-flight tasks."""
        self._inflight.pop(delivery.token, None)
        if delivery.token is None:
            return
        stream, entry_id = delivery.token
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.xack(stream, GROUP, entry_id)
            pipe.xdel(stream, entry_id)
            await pipe.execute(raise_on_error=False)  # the entry may be gone already (FLUSHALL)

    async def depth(self, recipients: Collection[str] | None = None) -> int:
        streams, _ = self._streams(await self._names(recipients))
        if not streams:
            return 0
        return int(await self._depth(keys=streams, args=[GROUP]))

    async def dead_letter(self, entry: dict[str, Any]) -> None:
        fields = {k: v if isinstance(v, str) else orjson.dumps(v) for k, v in entry.items() if v is not None}
        try:
            await self.redis.xadd(self.keys.dead_letters, fields, maxlen=STREAM_MAXLEN, approximate=True)
        except (rexc.RedisError, OSError) as exc:  # the database has the record; the stream is a feed
            log.warning("redis bus: cannot add to the dead-letter stream: %s", exc)

    # -- results ------------------------------------------------------------------------------------
    async def reply(self, message: AgentMessage) -> None:
        if self._resolve_reply(message):  # the orchestrator is in this process: no round trip
            return
        await self._ride_out(f"sending the result {message.correlation_id}", lambda: self.redis.xadd(
            self.keys.reply_stream(message.recipient), {"m": message.model_dump_json()},
            maxlen=STREAM_MAXLEN, approximate=True))

    async def reply_and_ack(self, message: AgentMessage, delivery: Delivery) -> None:
        self._inflight.pop(delivery.token, None)
        local = self._resolve_reply(message)

        async def push() -> None:
            async with self.redis.pipeline(transaction=False) as pipe:
                if not local:
                    pipe.xadd(self.keys.reply_stream(message.recipient), {"m": message.model_dump_json()},
                              maxlen=STREAM_MAXLEN, approximate=True)
                if delivery.token is not None:
                    pipe.xack(delivery.token[0], GROUP, delivery.token[1])
                    pipe.xdel(delivery.token[0], delivery.token[1])
                results = await pipe.execute(raise_on_error=False)
            if not local and isinstance(results[0], Exception):  # the result must not be lost silently
                raise results[0]

        await self._ride_out(f"sending the result {message.correlation_id}", push)

    def _listen_for_replies(self, owner: str) -> None:
        stream = self.keys.reply_stream(owner)
        if stream in self._reply_owners:
            return
        # Owners are unique per orchestrator process, so their stream starts empty: read from the start.
        self._reply_owners[stream] = "0-0"
        old = self._tasks.pop("replies", None)
        if old is not None:
            old.cancel()  # re-started so that its blocking read includes the new stream
        self._reply_generation += 1
        self._tasks["replies"] = asyncio.create_task(self._read_replies(self._reply_generation),
                                                     name="redis-bus-replies")

    async def _read_replies(self, generation: int) -> None:
        # Loops check why they should stop, not only for cancellation: redis-py 8 on Python 3.11 sometimes
        # swallows the cancellation of a blocking XREAD, and `close()` would then wait on this forever.
        while not self._closed and generation == self._reply_generation:
            try:
                got = await self.redis.xread(dict(self._reply_owners), count=500, block=1000)
            except (rexc.ConnectionError, rexc.TimeoutError, OSError) as exc:
                log.warning("redis bus: reading results failed (%s); retrying", exc)
                await asyncio.sleep(0.5)
                continue
            for stream, entries in got or []:
                name = _text(stream)
                for entry_id, fields in entries:
                    self._reply_owners[name] = _text(entry_id)
                    try:
                        self._resolve_reply(AgentMessage.model_validate_json(fields[b"m"]))
                    except (KeyError, ValueError) as exc:
                        log.warning("redis bus: unreadable result %s on %s: %s", _text(entry_id), name, exc)

    # -- live events --------------------------------------------------------------------------------
    async def publish(self, events: Collection[Event]) -> None:
        """Publish to every process (ours included: local subscribers read the same channel)."""
        by_execution: dict[str, list[dict[str, Any]]] = {}
        for event in events:
            by_execution.setdefault(event.execution_id, []).append(event.model_dump(mode="json"))
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for execution_id, items in by_execution.items():
                    pipe.publish(self.keys.events_channel(execution_id), orjson.dumps(items))
                await pipe.execute()
        except (rexc.RedisError, OSError) as exc:  # the events are in the database; live view catches up
            log.warning("redis bus: cannot publish events: %s", exc)

    @asynccontextmanager
    async def subscribe(self, execution_id: str | None = None) -> AsyncIterator[asyncio.Queue[Event]]:
        await self._ensure_listener()
        async with super().subscribe(execution_id) as queue:
            yield queue

    async def _ensure_listener(self) -> None:
        if "events" in self._tasks and not self._tasks["events"].done():
            return
        await self._open_pubsub()
        self._tasks["events"] = asyncio.create_task(self._listen_events(), name="redis-bus-events")

    async def _open_pubsub(self) -> None:
        self._pubsub = self.redis.pubsub()
        await self._pubsub.psubscribe(self.keys.events_pattern)
        # Wait for the confirmation: events published after subscribe() returns must not be missed.
        async with asyncio.timeout(10):
            while True:
                msg = await self._pubsub.get_message(timeout=1.0)
                if msg and msg.get("type") == "psubscribe":
                    return

    async def _listen_events(self) -> None:
        while not self._closed:
            try:
                msg = await self._pubsub.get_message(timeout=1.0)
            except (rexc.ConnectionError, rexc.TimeoutError, OSError) as exc:
                log.warning("redis bus: live events interrupted (%s); re-subscribing", exc)
                with suppress(Exception):
                    await self._pubsub.aclose()
                await asyncio.sleep(0.5)
                with suppress(rexc.RedisError, OSError, TimeoutError):
                    await self._open_pubsub()
                continue
            if not msg or msg.get("type") != "pmessage":
                continue
            try:
                events = [Event.model_validate(item) for item in orjson.loads(msg["data"])]
            except ValueError as exc:
                log.warning("redis bus: unreadable events on %s: %s", _text(msg.get("channel")), exc)
                continue
            self._fan_out(events)
