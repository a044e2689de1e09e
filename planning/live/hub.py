"""The open boards of one web process: shared reads, one poller, limits.

Every read a stream needs runs on a small, fixed pool of threads (LIVE_DB_THREADS), so a web
process uses that many connections however many boards are open, and the reads are shared:
after a signal, the plan's version, members, recent changes and presence are read once per
process (a `Watch` per plan), not once per open board. Streams are capped per person and per
process (LIVE_MAX_STREAMS_PER_USER, LIVE_MAX_STREAMS).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import OperationalError, close_old_connections, connection
from django.db.models import Max, Subquery

from ..kinds import KINDS
from ..models import Activity, Membership, Plan, SessionStatus, WorkshopSession
from .presence import present, refresh_presence
from .signals import broker, publish

log = logging.getLogger("planning.live")

HEARTBEAT_SECONDS = 15.0
# Without Redis, signals from other processes (the Celery worker) arrive by polling.
POLL_SECONDS = 5.0 if settings.REDIS_URL else 0.5
MAX_ITEMS = 20
SQLITE_LOCKED_TRIES = 20


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


def db[**P, R](func: Callable[P, R]) -> Callable[P, Any]:
    """`func` run on the live pool: a few threads, each with one reused connection."""

    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        close_old_connections()
        try:
            for attempt in range(SQLITE_LOCKED_TRIES):
                try:
                    return func(*args, **kwargs)
                except OperationalError as error:
                    # SQLite's shared in-memory database (the tests') refuses a statement
                    # that meets another thread's at once, with no busy wait: try again.
                    if connection.vendor != "sqlite" or "locked" not in str(error):
                        raise
                    if attempt == SQLITE_LOCKED_TRIES - 1:
                        raise
                    time.sleep(0.01 * (attempt + 1))
            raise AssertionError("unreachable")
        finally:
            close_old_connections()  # with a pool (CONN_MAX_AGE 0), the connection goes back

    return sync_to_async(call, thread_sensitive=False, executor=_executor())


@dataclass(frozen=True)
class PlanState:
    version: int
    slug: str
    members: frozenset[int]
    latest_activity: int
    room: tuple[int, int] | None = None  # the running workshop session: (id, revision)


def read_state(plan_id: int) -> PlanState | None:
    """The plan's version, members, latest activity and running session (its revision) in one
    statement; None when the plan is gone."""
    latest = Activity.objects.filter(plan_id=plan_id).values("plan_id").annotate(last=Max("id"))
    running = WorkshopSession.objects.filter(plan_id=plan_id, status=SessionStatus.RUNNING)
    row = (
        Plan.objects.filter(pk=plan_id)
        .annotate(
            latest=Subquery(latest.values("last")[:1]),
            session=Subquery(running.values("pk")[:1]),
            revision=Subquery(running.values("revision")[:1]),
        )
        .values_list("version", "slug", "latest", "session", "revision")
        .first()
    )
    if row is None:
        return None
    members = Membership.objects.filter(plan_id=plan_id).values_list("user_id", flat=True)
    return PlanState(
        version=row[0],
        slug=row[1],
        members=frozenset(members),
        latest_activity=row[2] or 0,
        room=(row[3], row[4]) if row[3] is not None else None,
    )


def read_versions(plan_ids: list[int]) -> dict[int, int]:
    return dict(Plan.objects.filter(pk__in=plan_ids).values_list("pk", "version"))


def changes_between(plan_id: int, slug: str, since: int, until: int) -> list[dict[str, Any]] | None:
    """What open boards re-fetch for the activities (since, until]: per changed item, its cards
    and the URL that draws one, and whether the edit moved it (then the whole board); None when
    they are too many for item-by-item refreshing."""
    rows = list(
        Activity.objects.filter(plan_id=plan_id, id__gt=since, id__lte=until)
        .order_by("id")
        .values("action", "item_type", "item_id", "after")[: MAX_ITEMS + 1]
    )
    if len(rows) > MAX_ITEMS:
        return None
    return [_change(slug, row) for row in rows]


def _change(slug: str, row: Mapping[str, Any]) -> dict[str, Any]:
    kind = KINDS.get(row["item_type"])
    fields = set(row["after"]) if isinstance(row["after"], dict) else set()
    alone = (
        kind is not None
        and kind.refreshes_alone
        and row["action"] in {Activity.Action.UPDATED, Activity.Action.TESTED}
        and not fields & kind.moves_card
    )
    return {
        "key": f"{row['item_type']}-{row['item_id']}",
        "url": kind.url("view", slug, row["item_id"]) if alone and kind else "",
        "refresh": "item" if alone else "board",
    }


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
            "state", self.generation, lambda: db(read_state)(self.plan_id)
        )
        if state is not None:
            self.known_version = state.version
        return state

    async def presence(self) -> list[dict[str, Any]]:
        return await self.shared.get("presence", self.generation, lambda: db(present)(self.plan_id))

    async def changes(self, state: PlanState, since: int) -> list[dict[str, Any]] | None:
        return await self.shared.get(
            ("changes", since, state.latest_activity),
            self.generation,
            lambda: db(changes_between)(self.plan_id, state.slug, since, state.latest_activity),
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
            broker.add(plan_id, self)
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
                broker.remove(plan_id, self)

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
                    for plan_id in await db(refresh_presence)(list(self.connections)):
                        await db(publish)(plan_id)
                versions = await db(read_versions)(list(self.watches))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("live updates: could not poll the plans' versions", exc_info=True)
                continue
            for plan_id, watch in list(self.watches.items()):
                if versions.get(plan_id) != watch.known_version:
                    watch.wake()


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub] = weakref.WeakKeyDictionary()


def current_hub() -> Hub:
    loop = asyncio.get_running_loop()
    found = _hubs.get(loop)
    if found is None:
        found = _hubs[loop] = Hub(loop)
    return found
