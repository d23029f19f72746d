"""A worker process: claims tasks from the priority streams, runs them under a lease, and
records every transition through the task decider.

Claiming. A Redis message only says "look at task X". The worker assigns the task to itself
and starts it with ``ClaimTask`` (TaskAssigned and TaskStarted in one append), which the task
stream accepts only from pending or retry-scheduled, and which hands out a lease and a
fencing token one greater than any before. So a duplicate
message, a stale one, or two workers racing for one task end with one holder: the loser's
append conflicts, it reloads, and the decider refuses it. The message is acknowledged only
after the task's outcome is recorded, so a worker that dies leaves its message pending.

The lease. While the handler runs, a heartbeat (a separate asyncio task, so a handler that
blocks its own code does not stop it) renews the lease every third of its length. If the
renewal is refused, the task was cancelled or taken over: the handler is cancelled, and
nothing it would have written can land, because every write carries the fencing token.

Reclaiming. Every few seconds the reaper claims (``XAUTOCLAIM``) messages left pending longer
than a lease by a worker that died. For each, if the task's lease has run out, it times the
task out, schedules the retry (or dead-letters it when its attempts are spent) and runs it
again under a new token. A late write by the dead worker's process, were it only paused, is
refused by its stale token.

Retries back off exponentially with full jitter, capped; a ``NonRetryable`` error
dead-letters at once. Retries wait in a Redis sorted set until due. Redis holds only hints:
the reconciler re-dispatches, from PostgreSQL, every task that is waiting or whose lease ran
out, so a flushed Redis loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import structlog
from redis.asyncio import Redis

from api.worker.handlers import HANDLERS, NonRetryable, TaskContext, run_handler
from api.worker.metrics import HEARTBEAT, OUTCOMES, QUEUE_WAIT, RUN_TIME
from core.domain import AGENT, TASK, CommandContext, Handled, handle
from core.domain.agent import BringAgentOnline, RegisterAgent
from core.domain.contracts import EventRegistry
from core.domain.decider import Decider
from core.domain.errors import CommandRefused
from core.domain.loading import Loaded, LogLoader
from core.domain.registry import DOMAIN_EVENTS
from core.domain.task import (
    ClaimTask,
    CompleteTask,
    DeadLetterTask,
    FailTask,
    RenewTaskLease,
    ScheduleTaskRetry,
    TaskState,
    TaskStatus,
    TimeOutTask,
)
from core.errors import InvalidInput, RetriableError
from eventstore import EventStore
from eventstore.redis.keys import PREFIX, queue_key
from eventstore.redis.queues import (
    GROUP,
    PRIORITIES,
    dispatch,
    dispatch_later,
    ensure_groups,
    free_slot,
    parked_key,
    release_due,
    take_slot,
    take_token,
)

__all__ = ["HeldTasks", "Worker", "WorkerOptions", "backoff_s", "reconcile"]

S = TypeVar("S")

log = structlog.get_logger(__name__)

# Out of every 10 claims: 6 look at high first, 3 at normal first, 1 at low first, so low is
# looked at first at least once in 10 and never starves behind a deep high queue.
_ORDERS = (
    *[("high", "normal", "low")] * 6,
    *[("normal", "high", "low")] * 3,
    ("low", "high", "normal"),
)


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    name: str
    queues: tuple[str, ...] = PRIORITIES
    concurrency: int = 4
    lease_s: float = 10.0
    capabilities: tuple[str, ...] = ()
    tenant_id: str = "system"  # the tenant its own agent events are recorded under
    reap_every_s: float = 2.0
    reconcile_every_s: float = 30.0
    tenant_max_running: int = 0  # tasks one tenant runs at once across every worker; 0: no limit
    tenant_rate: float = 0.0  # tasks one tenant starts a second across every worker; 0: no limit
    device: str = "auto"  # for handlers that use torch (train)
    data_dir: Path = Path(".chronicle")  # where handlers keep files (train's checkpoints)
    backoff_base_s: float = 1.0
    backoff_cap_s: float = 60.0


def backoff_s(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Full jitter: uniform in [0, min(cap, base * 2^(attempt-1))]."""
    return rng.uniform(0, min(cap, base * 2 ** max(attempt - 1, 0)))


class HeldTasks:
    """The state of the tasks this worker is working on, as it last wrote them: a command's
    load needs no read of the stream. Safe because every append names the version it decided
    on: if someone else wrote meanwhile (a cancel), the append conflicts and handling reloads
    from the log (``fresh``) and decides again."""

    def __init__(self, store: EventStore) -> None:
        self._log = LogLoader(store)
        self._known: dict[str, tuple[Any, int]] = {}

    async def load(
        self, stream_id: str, decider: Decider[Any, S], registry: EventRegistry, *, fresh: bool = False
    ) -> Loaded[S]:
        known = None if fresh else self._known.get(stream_id)
        if known is None:
            loaded = await self._log.load(stream_id, decider, registry)
            self._known[stream_id] = (loaded.state, loaded.version)
            return loaded
        state, version = known
        return Loaded(stream_id, state, version, (), snapshot_version=version)

    async def stored(self, stream_id: str, decider: Decider[Any, S], state: S, version: int) -> None:
        self._known[stream_id] = (state, version)

    def seen(self, stream_id: str, state: Any, version: int) -> None:
        self._known[stream_id] = (state, version)

    def forget(self, stream_id: str) -> None:
        self._known.pop(stream_id, None)


class Worker:
    def __init__(self, store: EventStore, redis: Redis, pool: asyncpg.Pool, options: WorkerOptions) -> None:
        self._store = store
        self._redis = redis
        self._pool = pool
        self._held = HeldTasks(store)
        # Per priority: its queue, then the parked streams of every set of capabilities this
        # worker covers (a task parks under exactly the set it requires).
        caps = sorted(set(options.capabilities))
        if len(caps) > 8:
            raise InvalidInput(f"a worker offers at most 8 capabilities, not {len(caps)}: {caps}")
        subsets = [c for n in range(1, len(caps) + 1) for c in itertools.combinations(caps, n)]
        self._streams = {
            p: [queue_key(p), *(parked_key(p, subset) for subset in subsets)] for p in options.queues
        }
        self.options = options
        self._draining = asyncio.Event()
        self._rng = random.Random()
        self._claims = 0

    def drain(self) -> None:
        """Stop claiming; tasks in hand finish (SIGTERM)."""
        self._draining.set()

    def _all_streams(self) -> list[str]:
        return [key for keys in self._streams.values() for key in keys]

    async def run(self) -> None:
        await ensure_groups(self._redis, self._all_streams())
        await self._register()
        claimers = [asyncio.create_task(self._claim_loop(i)) for i in range(self.options.concurrency)]
        helpers = [asyncio.create_task(self._reap_loop()), asyncio.create_task(self._reconcile_loop())]
        try:
            await asyncio.gather(*claimers)
        finally:
            for helper in helpers:
                helper.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)

    async def _register(self) -> None:
        now = datetime.now(UTC)
        context = CommandContext(self.options.tenant_id, self.options.name)
        stream = AGENT.stream_id(self.options.name)
        register = RegisterAgent(self.options.name, self.options.name, self.options.capabilities, now)
        with contextlib.suppress(CommandRefused):  # registered by an earlier run
            await handle(self._store, stream, register, AGENT, context)
        with contextlib.suppress(CommandRefused):  # already online
            await handle(self._store, stream, BringAgentOnline(self.options.name, now), AGENT, context)

    async def _do(self, command: Any, context: CommandContext) -> Handled[TaskState]:
        """Handle a task command on its task's stream, from the state this worker last saw."""
        stream = TASK.stream_id(command.task_id)
        return await handle(self._store, stream, command, TASK, context, loader=self._held)

    # -- claiming ------------------------------------------------------------------------------

    async def _claim_loop(self, index: int) -> None:
        consumer = f"{self.options.name}/{index}"
        while not self._draining.is_set():
            try:
                found = await self._next(consumer)
                if found is not None:
                    await self._process(*found)
            except Exception as exc:
                # PostgreSQL or Redis away, a lost race retried too often: the message stays
                # pending (unacknowledged) and the reaper hands it out again; pause and go on.
                log.warning("worker.claim_failed", error=str(exc), consumer=consumer)
                await self._regroup_if_lost(exc)
                await asyncio.sleep(0.5)

    async def _next(self, consumer: str) -> tuple[str, str, str] | None:
        HEARTBEAT.set_to_current_time()
        self._claims += 1
        order = [q for q in _ORDERS[self._claims % len(_ORDERS)] if q in self.options.queues]
        for i, queue in enumerate(order):
            block = 1000 if i == len(order) - 1 else None  # wait only on the last look
            streams: dict[Any, Any] = dict.fromkeys(self._streams[queue], ">")
            reply: Any = await self._redis.xreadgroup(GROUP, consumer, streams, count=1, block=block)
            if reply:
                stream, messages = reply[0]
                message_id, fields = messages[0]
                return _text(stream), _text(message_id), _text(fields[b"task_id"])
        return None

    async def _regroup_if_lost(self, exc: Exception) -> None:
        """A flushed or replaced Redis lost the consumer groups too: make them again (the
        reconciler puts the tasks back)."""
        if "NOGROUP" in str(exc):
            with contextlib.suppress(Exception):
                await ensure_groups(self._redis, self._all_streams())

    async def _ack(self, stream: str, message_id: str) -> None:
        await self._redis.xack(stream, GROUP, message_id)

    async def _process(self, stream: str, message_id: str, task_id: str, *, reaping: bool = False) -> None:
        try:
            # trace_id and tenant_id are bound inside, once read; leaving the block unbinds them.
            scope = {"task_id": task_id, "worker": self.options.name, "trace_id": None, "tenant_id": None}
            with structlog.contextvars.bound_contextvars(**scope):
                await self._process_task(task_id)
        except Held:
            if reaping:
                return  # its holder is alive: leave the message pending, to look again later
        except CommandRefused as exc:  # someone else holds or ended it meanwhile
            log.info("task.skipped", task_id=task_id, reason=str(exc))
        finally:
            self._held.forget(TASK.stream_id(task_id))
        await self._ack(stream, message_id)

    async def _process_task(self, task_id: str) -> None:
        claimed = await self._claim(task_id)
        if claimed is None:
            return
        try:
            await self._execute(*claimed)
        finally:
            if self.options.tenant_max_running:
                await free_slot(self._redis, claimed[1].tenant_id, task_id)

    async def _claim(self, task_id: str) -> tuple[TaskState, CommandContext] | None:
        """The task, assigned to this worker and started; None if there is nothing to run.
        Raises Held while another worker holds it under a live lease."""
        now = datetime.now(UTC)
        events = await self._store.read_stream(TASK.stream_id(task_id))
        if not events:
            return None
        context = CommandContext(events[0].tenant_id or self.options.tenant_id, self.options.name)
        trace_id = events[0].metadata.get("trace_id")
        if trace_id:  # the submitting request's id: one id from the HTTP request to the worker's lines
            structlog.contextvars.bind_contextvars(trace_id=trace_id, tenant_id=context.tenant_id)
        state = TASK.fold(_read(events))
        self._held.seen(TASK.stream_id(task_id), state, events[-1].stream_version)
        submitted_at = events[0].recorded_at
        if state.status in (TaskStatus.ASSIGNED, TaskStatus.RUNNING):
            if state.lease_expires_at is None or state.lease_expires_at > now:
                raise Held(task_id)
            log.info("task.reclaimed", task_id=task_id, holder=state.assignee)
            state = await self._end_attempt(task_id, context, TimeOutTask(task_id, now), error=None)
        if state.status not in (TaskStatus.PENDING, TaskStatus.RETRY_SCHEDULED):
            return None
        missing = set(state.requires) - set(self.options.capabilities)
        if missing:
            # Not ours to run: parked where only a worker that offers them all will look.
            log.info("task.needs_capabilities", task_id=task_id, missing=sorted(missing))
            parked = parked_key(state.priority.value, state.requires)
            await ensure_groups(self._redis, [parked])
            await self._redis.xadd(parked, {"task_id": task_id})
            return None
        if state.retry_not_before is not None and state.retry_not_before > now:
            await dispatch_later(
                self._redis, task_id, state.priority.value, state.retry_not_before.timestamp()
            )
            return None
        if state.ordering_key is not None and await self._waits_its_turn(events[0], state.ordering_key):
            # An earlier task with its key is still live: it goes first.
            await dispatch_later(self._redis, task_id, state.priority.value, time.time() + 0.5)
            return None
        rate = self.options.tenant_rate
        if rate and not await take_token(self._redis, context.tenant_id, rate):
            # Over its tenant's rate: back on the queue when a token is due.
            await dispatch_later(self._redis, task_id, state.priority.value, time.time() + 1 / rate)
            return None
        lease = now + timedelta(seconds=self.options.lease_s)
        limit = self.options.tenant_max_running
        if limit and not await take_slot(self._redis, context.tenant_id, task_id, lease.timestamp(), limit):
            # The tenant runs its limit already: back on the queue shortly, out of others' way.
            await dispatch_later(self._redis, task_id, state.priority.value, time.time() + 0.5)
            return None
        try:
            # Assigned and started in one append (ClaimTask): one transaction per claim, not two.
            started = await self._do(ClaimTask(task_id, self.options.name, lease, now), context)
        except BaseException:
            if limit:
                await free_slot(self._redis, context.tenant_id, task_id)
            raise
        waited_since = state.retry_not_before or submitted_at
        QUEUE_WAIT.observe(max((datetime.now(UTC) - waited_since).total_seconds(), 0.0))
        return started.state, context

    async def _waits_its_turn(self, submitted: Any, ordering_key: str) -> bool:
        """Whether a task of the same tenant and key, submitted before this one, is still live
        (a dead letter counts as ended: a poison task must not hold its key for ever)."""
        async with self._pool.acquire() as conn:
            earlier = await conn.fetchval(
                _EARLIER_LIVE, submitted.tenant_id, ordering_key, submitted.global_position, list(_ENDED)
            )
        return earlier is not None

    async def _end_attempt(
        self,
        task_id: str,
        context: CommandContext,
        command: Any,
        *,
        error: str | None,
        retryable: bool = True,
    ) -> TaskState:
        """Record the attempt's end (``command``: FailTask or TimeOutTask), then a retry or,
        when attempts are spent or the error is not retryable, the dead letter."""
        ended = await self._do(command, context)
        state = ended.state
        OUTCOMES.labels("failed" if isinstance(command, FailTask) else "timed_out").inc()
        now = datetime.now(UTC)
        if retryable and state.attempt < state.max_attempts:
            wait = backoff_s(
                state.attempt, self.options.backoff_base_s, self.options.backoff_cap_s, self._rng
            )
            due = now + timedelta(seconds=wait)
            state = (await self._do(ScheduleTaskRetry(task_id, due, now), context)).state
            await dispatch_later(self._redis, task_id, state.priority.value, due.timestamp())
            return state
        if retryable:
            reason = f"attempts exhausted ({state.attempt}/{state.max_attempts}): {error or 'timed out'}"
        else:
            reason = f"not retryable: {error}"
        return (await self._do(DeadLetterTask(task_id, reason, now), context)).state

    # -- running -------------------------------------------------------------------------------

    async def _execute(self, state: TaskState, context: CommandContext) -> None:
        task_id, token = state.task_id, state.fencing_token
        fn = HANDLERS.get(state.handler)
        ctx = TaskContext(
            task_id,
            state.attempt,
            token,
            self.options.name,
            tenant_id=context.tenant_id,
            device=self.options.device,
            event_log=self._store,
            data_dir=self.options.data_dir,
        )
        if fn is None:
            await self._end_attempt(
                task_id,
                context,
                FailTask(task_id, token, f"no handler {state.handler!r}", datetime.now(UTC)),
                error=f"no handler {state.handler!r}",
                retryable=False,
            )
            return
        began = time.perf_counter()
        work = asyncio.create_task(run_handler(fn, state.payload, ctx))
        # The heartbeat keeps the lease until the outcome is recorded, so a database blip while
        # recording it does not hand the task to another worker to run a second time.
        heartbeat = asyncio.create_task(self._heartbeat(task_id, token, context, work))
        try:
            try:
                result = await work
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    work.cancel()
                    raise  # this worker is being stopped: the lease runs out and the task is reclaimed
                log.info("task.cancelled_while_running", task_id=task_id)
                OUTCOMES.labels("lost").inc()
                return  # the heartbeat found it cancelled or taken over; nothing to record
            except NonRetryable as exc:
                reason = str(exc)
                fail = FailTask(task_id, token, reason, datetime.now(UTC))
                await _persist(
                    lambda: self._end_attempt(task_id, context, fail, error=reason, retryable=False)
                )
                return
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                fail = FailTask(task_id, token, error, datetime.now(UTC))
                await _persist(lambda: self._end_attempt(task_id, context, fail, error=error))
                return
            done = CompleteTask(task_id, token, datetime.now(UTC), result)
            await _persist(lambda: self._do(done, context))
            OUTCOMES.labels("completed").inc()
        finally:
            RUN_TIME.labels(state.handler).observe(time.perf_counter() - began)
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat

    async def _heartbeat(
        self, task_id: str, token: int, context: CommandContext, work: asyncio.Task[Any]
    ) -> None:
        while True:
            await asyncio.sleep(self.options.lease_s / 3)
            now = datetime.now(UTC)
            try:
                lease = now + timedelta(seconds=self.options.lease_s)
                await self._do(RenewTaskLease(task_id, token, lease, now), context)
                if self.options.tenant_max_running:  # the slot lives as long as the lease
                    await take_slot(self._redis, context.tenant_id, task_id, lease.timestamp(), 1 << 30)
                HEARTBEAT.set_to_current_time()
            except CommandRefused as exc:  # cancelled, or the lease went to another worker
                log.info("task.lease_lost", task_id=task_id, reason=str(exc))
                work.cancel()
                return

    async def _reconcile_loop(self) -> None:
        """One worker at a time (a Redis lock that expires) re-dispatches from PostgreSQL."""
        every = self.options.reconcile_every_s
        while True:
            try:
                if await self._redis.set(
                    _reconcile_lock(), self.options.name, nx=True, ex=max(int(every), 1)
                ):
                    async with self._pool.acquire() as conn:
                        count = await reconcile(conn, self._redis, self.options.queues)
                    log.info("worker.reconciled", dispatched=count)
            except Exception as exc:  # the next round retries
                log.warning("worker.reconcile_failed", error=str(exc))
            await asyncio.sleep(every)

    # -- reclaiming ----------------------------------------------------------------------------

    async def _reap_loop(self) -> None:
        consumer = f"{self.options.name}/reaper"
        idle_ms = int(self.options.lease_s * 1000)
        while True:
            await asyncio.sleep(self.options.reap_every_s)
            try:
                await release_due(self._redis, time.time())
                for stream in self._all_streams():
                    _, claimed, *_ = await self._redis.xautoclaim(
                        stream, GROUP, consumer, min_idle_time=idle_ms, start_id="0-0", count=100
                    )
                    for message_id, fields in claimed:
                        if fields:  # a deleted entry comes back empty
                            await self._process(
                                stream, _text(message_id), _text(fields[b"task_id"]), reaping=True
                            )
                        else:
                            await self._ack(stream, _text(message_id))
            except Exception as exc:  # keep reaping through a blip; the next round retries
                log.warning("worker.reap_failed", error=str(exc))
                await self._regroup_if_lost(exc)


async def _persist(write: Callable[[], Awaitable[Any]], patience_s: float = 60.0) -> None:
    """Run ``write`` (recording an outcome), again while the database is away, for up to
    ``patience_s`` seconds; the heartbeat holds the lease meanwhile."""
    deadline = time.monotonic() + patience_s
    pause = 0.1
    while True:
        try:
            await write()
            return
        except RetriableError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(pause)
            pause = min(pause * 2, 2.0)


class Held(Exception):
    """Another worker holds the task under a live lease."""


def _reconcile_lock() -> str:
    return f"{PREFIX}:reconciling"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _read(events: Iterable[Any]) -> Iterable[Any]:
    return (DOMAIN_EVENTS.read(e) for e in events)


_ENDED = ("TaskCompleted", "TaskCancelled", "TaskDeadLettered")
# The first task of the same tenant and ordering key, submitted before this one, whose stream's
# last event has not ended it (events_ordering_key_idx, then one probe per earlier task).
_EARLIER_LIVE = """
SELECT e.stream_id FROM events e
JOIN streams s ON s.stream_id = e.stream_id
JOIN events last ON last.stream_id = s.stream_id AND last.stream_version = s.version
WHERE e.event_type = 'TaskSubmitted' AND e.tenant_id IS NOT DISTINCT FROM $1
  AND e.data->>'ordering_key' = $2 AND e.data->>'ordering_key' IS NOT NULL
  AND e.global_position < $3 AND NOT last.event_type = ANY($4::text[])
LIMIT 1
"""
# Every task stream whose last event leaves it waiting or held, read from the log itself (not
# the task board, which may lag or be down). Held ones are dispatched too: a worker finds the
# holder alive and lets the message go, or finds the lease run out and reclaims the task.
_WAITING = """
SELECT s.stream_id, first.data->>'priority' AS priority,
       CASE WHEN last.event_type = 'TaskRetryScheduled' THEN (last.data->>'not_before')::timestamptz END
         AS not_before
FROM streams s
JOIN events last ON last.stream_id = s.stream_id AND last.stream_version = s.version
JOIN events first ON first.stream_id = s.stream_id AND first.stream_version = 1
WHERE s.category = 'task' AND NOT s.archived AND last.event_type = ANY($1::text[])
  AND first.data->>'priority' = ANY($2::text[])
"""
_LIVE_TYPES = [
    "TaskSubmitted",
    "TaskRetryScheduled",
    "TaskRequeued",
    "TaskAssigned",
    "TaskStarted",
    "TaskLeaseRenewed",
    "TaskProgressed",
]


async def reconcile(conn: asyncpg.Connection, redis: Redis, priorities: Sequence[str] = PRIORITIES) -> int:
    """Dispatch again, from the log, every task that is waiting to run or held; a retry not yet
    due goes back to the delayed set. A task dispatched twice runs once (see the module
    docstring). Only tasks of ``priorities`` (the queues the calling worker serves): a
    priority no worker serves is left alone. Returns how many were dispatched."""
    rows = await conn.fetch(_WAITING, _LIVE_TYPES, list(priorities))
    now = datetime.now(UTC)
    for row in rows:
        task_id = row["stream_id"].split("-", 1)[1]
        if row["not_before"] is not None and row["not_before"] > now:
            await dispatch_later(redis, task_id, row["priority"], row["not_before"].timestamp())
        else:
            await dispatch(redis, task_id, row["priority"])
    return len(rows)
