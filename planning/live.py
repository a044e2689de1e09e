"""Live updates: tell every open board of a plan that it changed.

A change is a signal ("plan N is now at version V"); each board then re-fetches what it shows
through the normal, permission-checked views. Signals travel through Redis pub/sub when
REDIS_URL is set (any process, any server), else through an in-process broker; in both cases
each web process also re-reads the versions of the plans it watches every few moments, so a
signal lost on the way (or sent by a Celery worker with no Redis) delays an update but never
loses it.

An open stream holds no database connection while it waits. Every read a stream needs runs on a
small, fixed pool of threads (LIVE_DB_THREADS), so a web process uses that many connections
however many boards are open; and the reads are shared: after a signal, the plan's version,
members, recent changes and presence are read once per process, not once per open board.
Streams are capped per person and per process (LIVE_MAX_STREAMS_PER_USER, LIVE_MAX_STREAMS).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import threading
import uuid
import weakref
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections, connections, transaction
from django.db.models import F, Max, Subquery
from django.utils import timezone

from .models import Activity, Membership, Plan, Presence, Role

log = logging.getLogger(__name__)

CHANNEL_PREFIX = "outside-in:plan:"
PRESENCE_TTL = dt.timedelta(seconds=45)
HEARTBEAT_SECONDS = 15.0
# Without Redis, signals from other processes (the Celery worker) arrive by polling.
POLL_SECONDS = 5.0 if settings.REDIS_URL else 0.5
MAX_ITEMS = 20


# --- publishing (sync, from services and tasks) ---------------------------------------------------


def plan_changed(plan_id: int, *, bump: bool = False) -> None:
    """Signal a change once the surrounding transaction commits. `bump` raises the plan's
    version for changes that wrote no activity (a re-test's new observed value)."""
    if bump:
        Plan.objects.filter(pk=plan_id).update(version=F("version") + 1)
    transaction.on_commit(lambda: _publish(plan_id))


def _publish(plan_id: int) -> None:
    _broker.wake(plan_id)
    if settings.REDIS_URL:
        try:
            _redis().publish(f"{CHANNEL_PREFIX}{plan_id}", "1")
        except Exception as error:  # the poll still delivers it; a lost signal only delays
            # an update. No traceback: it would keep the caller's frames (and their database
            # connection) alive, and "Redis is down" says it all.
            log.warning("could not publish a live update for plan %s: %s", plan_id, str(error))


_redis_clients: dict[str, Any] = {}


def _redis():
    """The publishing client for the configured Redis. Short timeouts: publishing runs after a
    save, in the request, and a Redis that does not answer must not hold the save's response."""
    url = settings.REDIS_URL
    if url not in _redis_clients:
        import redis

        _redis_clients[url] = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    return _redis_clients[url]


# --- the database, from streams ---------------------------------------------------------------

_pool_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(
                max_workers=settings.LIVE_DB_THREADS, thread_name_prefix="live-db"
            )
        return _pool


def close_pool() -> None:
    """Stop the stream's database threads; their connections close with them (tests, shutdown)."""
    global _pool
    with _pool_lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.submit(lambda: None).result()
        pool.shutdown(wait=True)


def _db[**P, R](func: Callable[P, R]) -> Callable[P, Any]:
    """`func` run on the live pool: a few threads, each with one reused connection."""

    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        close_old_connections()
        try:
            return func(*args, **kwargs)
        finally:
            close_old_connections()  # with a pool (CONN_MAX_AGE 0), the connection goes back

    return sync_to_async(call, thread_sensitive=False, executor=_executor())


# --- presence ---------------------------------------------------------------------------------


def open_presence(plan_id: int, user_id: int, connection: str) -> None:
    """A board opened: its presence row lives as long as its stream."""
    Presence.objects.create(
        plan_id=plan_id, user_id=user_id, connection=connection, last_seen=timezone.now()
    )


def touch_presence(plan_id: int, user_id: int, connection: str, editing: str | None = None) -> bool:
    """Say what this open board edits now. False, and nothing written, when the connection is
    not one of this person's open boards on this plan. Only a real change signals the others."""
    rows = Presence.objects.filter(connection=connection, plan_id=plan_id, user_id=user_id)
    if editing is None:
        return bool(rows.update(last_seen=timezone.now()))
    editing = editing[:80]
    if rows.exclude(editing=editing).update(editing=editing, last_seen=timezone.now()):
        transaction.on_commit(lambda: _publish(plan_id))
        return True
    return rows.exists()


def leave_presence(plan_id: int, connection: str) -> None:
    Presence.objects.filter(connection=connection).delete()
    _publish(plan_id)


def refresh_presence(connections: list[str]) -> list[int]:
    """One statement for every board this process holds open, then the rows no process keeps
    alive any more (a process that died) go; the plans they were on, to signal."""
    now = timezone.now()
    if connections:
        Presence.objects.filter(connection__in=connections).update(last_seen=now)
    expired = Presence.objects.filter(last_seen__lt=now - PRESENCE_TTL)
    plans = sorted(set(expired.values_list("plan_id", flat=True)))
    if plans:
        expired.delete()
    return plans


def present(plan_id: int) -> list[dict[str, Any]]:
    """Who has the plan open (one entry per person), and what each is editing."""
    since = timezone.now() - PRESENCE_TTL
    rows = (
        Presence.objects.filter(plan_id=plan_id, last_seen__gte=since)
        .select_related("user")
        .order_by("user__first_name", "user_id", "id")
    )
    roles = dict(Membership.objects.filter(plan_id=plan_id).values_list("user_id", "role"))
    people: dict[int, dict[str, Any]] = {}
    for row in rows:
        if row.user_id not in roles:  # removed from the plan; their board is closing
            continue
        person = people.setdefault(
            row.user_id,
            {
                "id": row.user_id,
                "name": row.user.get_full_name() or row.user.get_username(),
                "role": _role_label(roles.get(row.user_id, "")),
                "editing": [],
            },
        )
        if row.editing:
            person["editing"].append(row.editing)
    return list(people.values())


def _role_label(role: str) -> str:
    return Role(role).label if role in Role.values else ""


# --- what a stream reads, once per process and signal ----------------------------------------


@dataclass(frozen=True)
class PlanState:
    version: int
    members: frozenset[int]
    latest_activity: int


def read_state(plan_id: int) -> PlanState | None:
    """The plan's version, members and latest activity in one statement; None when it is gone."""
    latest = Activity.objects.filter(plan_id=plan_id).values("plan_id").annotate(last=Max("id"))
    row = (
        Plan.objects.filter(pk=plan_id)
        .annotate(latest=Subquery(latest.values("last")[:1]))
        .values_list("version", "latest")
        .first()
    )
    if row is None:
        return None
    members = Membership.objects.filter(plan_id=plan_id).values_list("user_id", flat=True)
    return PlanState(version=row[0], members=frozenset(members), latest_activity=row[1] or 0)


def read_versions(plan_ids: list[int]) -> dict[int, int]:
    return dict(Plan.objects.filter(pk__in=plan_ids).values_list("pk", "version"))


def changes_between(plan_id: int, since: int, until: int) -> list[dict[str, Any]] | None:
    """The items changed by activities (since, until], or None when they are too many for
    item-by-item refreshing."""
    rows = list(
        Activity.objects.filter(plan_id=plan_id, id__gt=since, id__lte=until)
        .order_by("id")
        .values("action", "item_type", "item_id", "after")[: MAX_ITEMS + 1]
    )
    if len(rows) > MAX_ITEMS:
        return None
    return [
        {
            "type": row["item_type"],
            "id": row["item_id"],
            "action": row["action"],
            "fields": sorted(row["after"]) if isinstance(row["after"], dict) else [],
        }
        for row in rows
    ]


class Shared:
    """One read shared by every stream of a plan until the next signal: the first stream to
    ask reads, the others wait for its answer."""

    def __init__(self) -> None:
        self.values: dict[Any, tuple[int, Any]] = {}
        self.locks: dict[Any, asyncio.Lock] = defaultdict(asyncio.Lock)

    async def get(self, key: Any, generation: int, read: Callable[[], Any]) -> Any:
        cached = self.values.get(key)
        if cached is not None and cached[0] == generation:
            return cached[1]
        async with self.locks[key]:
            cached = self.values.get(key)
            if cached is not None and cached[0] == generation:
                return cached[1]
            value = await read()
            self.values[key] = (generation, value)
            if len(self.values) > 64:  # keys of `changes` pile up: keep the current ones
                for old in [k for k, (g, _) in self.values.items() if g != generation]:
                    self.values.pop(old, None)
                    self.locks.pop(old, None)
            return value


class Watch:
    """The open streams of one plan in this process."""

    def __init__(self, plan_id: int) -> None:
        self.plan_id = plan_id
        self.generation = 0
        self.tick = asyncio.Event()
        self.streams = 0
        self.known_version: int | None = None
        self.shared = Shared()

    def wake(self) -> None:
        self.generation += 1
        tick, self.tick = self.tick, asyncio.Event()
        tick.set()

    async def state(self) -> PlanState | None:
        state = await self.shared.get(
            "state", self.generation, lambda: _db(read_state)(self.plan_id)
        )
        if state is not None:
            self.known_version = state.version
        return state

    async def presence(self) -> list[dict[str, Any]]:
        return await self.shared.get(
            "presence", self.generation, lambda: _db(present)(self.plan_id)
        )

    async def changes(self, since: int, until: int) -> list[dict[str, Any]] | None:
        return await self.shared.get(
            ("changes", since, until),
            self.generation,
            lambda: _db(changes_between)(self.plan_id, since, until),
        )


class Full(Exception):
    """No room for another stream; the message says whose limit it is."""


class Hub:
    """Every open stream of one event loop (one per web process), with one poller for them all."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.watches: dict[int, Watch] = {}
        self.connections: dict[str, int] = {}
        self.per_user: Counter[int] = Counter()
        self.total = 0
        self.poller: asyncio.Task | None = None

    def reserve(self, user_id: int) -> Callable[[], None]:
        """A place for one more stream of this person, or Full. The returned function gives it
        back; calling it twice gives it back once."""
        if self.total >= settings.LIVE_MAX_STREAMS:
            raise Full("This server has as many live connections as it can hold.")
        if self.per_user[user_id] >= settings.LIVE_MAX_STREAMS_PER_USER:
            raise Full(
                f"You have {settings.LIVE_MAX_STREAMS_PER_USER} live boards open, the most "
                "allowed: close one in another tab or window."
            )
        self.total += 1
        self.per_user[user_id] += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self.total -= 1
                self.per_user[user_id] -= 1
                if not self.per_user[user_id]:
                    del self.per_user[user_id]

        return release

    def watch(self, plan_id: int, connection: str) -> Watch:
        watch = self.watches.get(plan_id)
        if watch is None:
            watch = self.watches[plan_id] = Watch(plan_id)
            _broker.add(plan_id, self)
        watch.streams += 1
        self.connections[connection] = plan_id
        if self.poller is None or self.poller.done():
            self.poller = self.loop.create_task(self._poll())
        return watch

    def unwatch(self, plan_id: int, connection: str) -> None:
        self.connections.pop(connection, None)
        watch = self.watches.get(plan_id)
        if watch is not None:
            watch.streams -= 1
            if watch.streams <= 0:
                del self.watches[plan_id]
                _broker.remove(plan_id, self)

    def wake(self, plan_id: int) -> None:
        watch = self.watches.get(plan_id)
        if watch is not None:
            watch.wake()

    async def _poll(self) -> None:
        """The plans' versions in one read every POLL_SECONDS (changes from processes that
        could not signal), and every board's presence in one write every heartbeat."""
        last_beat = self.loop.time()
        while self.watches:
            await asyncio.sleep(POLL_SECONDS)
            try:
                if self.loop.time() - last_beat >= HEARTBEAT_SECONDS:
                    last_beat = self.loop.time()
                    for plan_id in await _db(refresh_presence)(list(self.connections)):
                        await _db(_publish)(plan_id)
                versions = await _db(read_versions)(list(self.watches))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("live updates: could not poll the plans' versions", exc_info=True)
                continue
            for plan_id, watch in list(self.watches.items()):
                if versions.get(plan_id) != watch.known_version:
                    watch.wake()


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub] = weakref.WeakKeyDictionary()


def hub() -> Hub:
    loop = asyncio.get_running_loop()
    found = _hubs.get(loop)
    if found is None:
        found = _hubs[loop] = Hub(loop)
    return found


# --- signals into the hubs: in-process, and one Redis subscriber per process -----------------


class Broker:
    """The hubs watching each plan, woken from any thread; one Redis subscriber feeds it."""

    def __init__(self) -> None:
        self.hubs: dict[int, set[Hub]] = defaultdict(set)
        self.lock = threading.Lock()
        self.subscriber: asyncio.Task | None = None

    def add(self, plan_id: int, hub: Hub) -> None:
        with self.lock:
            self.hubs[plan_id].add(hub)
        if settings.REDIS_URL and (self.subscriber is None or self.subscriber.done()):
            self.subscriber = hub.loop.create_task(self._subscribe())

    def remove(self, plan_id: int, hub: Hub) -> None:
        with self.lock:
            self.hubs[plan_id].discard(hub)
            if not self.hubs[plan_id]:
                del self.hubs[plan_id]

    def wake(self, plan_id: int) -> None:
        with self.lock:
            hubs = list(self.hubs.get(plan_id, ()))
        for hub in hubs:
            if not hub.loop.is_closed():
                hub.loop.call_soon_threadsafe(hub.wake, plan_id)

    async def _subscribe(self) -> None:
        import redis.asyncio as aioredis

        while True:
            try:
                client = aioredis.Redis.from_url(settings.REDIS_URL)
                async with client.pubsub() as pubsub:
                    await pubsub.psubscribe(f"{CHANNEL_PREFIX}*")
                    async for message in pubsub.listen():
                        if message.get("type") == "pmessage":
                            channel = message["channel"].decode()
                            self.wake(int(channel.removeprefix(CHANNEL_PREFIX)))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("live updates: Redis subscriber lost, retrying", exc_info=True)
                await asyncio.sleep(1)


_broker = Broker()


# --- the stream -------------------------------------------------------------------------------


def _sse(event: str, data: Any, event_id: int | None = None) -> bytes:
    lines = []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append(f"event: {event}")
    lines.append(f"data: {json.dumps(data)}")
    return ("\n".join(lines) + "\n\n").encode()


def stream(plan_id: int, user_id: int, last_version: int | None) -> AsyncIterator[bytes]:
    """The events for one open board, its place reserved now (Full when there is none). The
    place is given back when the stream ends, or when it is dropped without ever starting."""
    release = hub().reserve(user_id)
    events = _events(plan_id, user_id, last_version, release)
    weakref.finalize(events, release)
    return events


async def _events(
    plan_id: int, user_id: int, last_version: int | None, release: Callable[[], None]
) -> AsyncIterator[bytes]:
    """Server-sent events for one open board: `changed` (with the plan's version; the id lets
    a reconnecting browser say what it saw) and `presence`."""
    # The request that opened this stream read the session and the plan in a thread of its
    # own; nothing reads the database there any more: give its connection back.
    await sync_to_async(connections.close_all)()
    connection = uuid.uuid4().hex
    here = hub()
    watch = here.watch(plan_id, connection)
    try:
        await _db(open_presence)(plan_id, user_id, connection)
        await _db(_publish)(plan_id)
        yield b"retry: 1000\n\n"
        yield _sse("hello", {"connection": connection})
        seen_presence = None
        last_activity: int | None = None
        while True:
            tick = watch.tick
            state = await watch.state()
            if state is None or user_id not in state.members:
                yield _sse("gone", {})
                return
            if state.version != last_version:
                # What changed is read from the activity record, so the board refreshes only
                # those items: one activity per version step. When they do not match (a
                # reconnect, or a change that wrote no activity such as a re-test's new
                # observed value), the board refreshes whole.
                items = None
                if last_activity is not None and last_version is not None:
                    items = await watch.changes(last_activity, state.latest_activity)
                    if items is not None and len(items) != state.version - last_version:
                        items = None
                yield _sse(
                    "changed", {"version": state.version, "items": items}, event_id=state.version
                )
                last_version = state.version
            last_activity = state.latest_activity
            people = await watch.presence()
            if people != seen_presence:
                yield _sse("presence", people)
                seen_presence = people
            try:
                await asyncio.wait_for(tick.wait(), timeout=HEARTBEAT_SECONDS)
            except TimeoutError:
                yield b": ping\n\n"
    finally:
        here.unwatch(plan_id, connection)
        release()
        await _db(leave_presence)(plan_id, connection)
