"""Live updates: tell every open board of a plan that it changed.

A change is a signal ("plan N is now at version V"); each board then re-fetches what it shows
through the normal, permission-checked views. Signals travel through Redis pub/sub when
REDIS_URL is set (any process, any server), else through an in-process broker; in both cases
each stream also re-reads the plan's version every few moments, so a signal lost on the way (or
sent by a Celery worker with no Redis) delays an update but never loses it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import threading
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections, transaction
from django.db.models import F
from django.utils import timezone

from .models import Activity, Membership, Plan, Presence, Role

log = logging.getLogger(__name__)

CHANNEL_PREFIX = "outside-in:plan:"
PRESENCE_TTL = dt.timedelta(seconds=45)
HEARTBEAT_SECONDS = 15.0
# Without Redis, signals from other processes (the Celery worker) arrive by polling.
POLL_SECONDS = 5.0 if settings.REDIS_URL else 0.5


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


# --- the in-process broker and the shared Redis subscriber ------------------------------------


class Broker:
    """Waiters per plan, woken from any thread; one Redis subscriber per process feeds it."""

    def __init__(self) -> None:
        self.waiters: dict[int, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = defaultdict(
            set
        )
        self.lock = threading.Lock()
        self.subscriber: asyncio.Task | None = None

    def add(self, plan_id: int) -> tuple[asyncio.AbstractEventLoop, asyncio.Event]:
        waiter = (asyncio.get_running_loop(), asyncio.Event())
        with self.lock:
            self.waiters[plan_id].add(waiter)
        if settings.REDIS_URL and (self.subscriber is None or self.subscriber.done()):
            self.subscriber = asyncio.get_running_loop().create_task(self._subscribe())
        return waiter

    def remove(self, plan_id: int, waiter: tuple[asyncio.AbstractEventLoop, asyncio.Event]) -> None:
        with self.lock:
            self.waiters[plan_id].discard(waiter)
            if not self.waiters[plan_id]:
                del self.waiters[plan_id]

    def wake(self, plan_id: int) -> None:
        with self.lock:
            waiters = list(self.waiters.get(plan_id, ()))
        for loop, event in waiters:
            loop.call_soon_threadsafe(event.set)

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


# --- presence ---------------------------------------------------------------------------------


def touch_presence(plan_id: int, user_id: int, connection: str, editing: str | None = None) -> bool:
    """Note that this open board is still here (and what it edits). False, and nothing
    written, when the connection is another person's or another plan's."""
    fields: dict[str, Any] = {"last_seen": timezone.now()}
    if editing is not None:
        fields["editing"] = editing[:80]
    updated = Presence.objects.filter(
        connection=connection, plan_id=plan_id, user_id=user_id
    ).update(**fields)
    if not updated:
        _, created = Presence.objects.get_or_create(
            connection=connection,
            defaults={
                "plan_id": plan_id,
                "user_id": user_id,
                "editing": fields.get("editing", ""),
                "last_seen": fields["last_seen"],
            },
        )
        if not created:
            return False
    if editing is not None:
        transaction.on_commit(lambda: _publish(plan_id))
    return True


def leave_presence(plan_id: int, connection: str) -> None:
    Presence.objects.filter(connection=connection).delete()
    _publish(plan_id)


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


# --- the stream -------------------------------------------------------------------------------


def _version(plan_id: int, user_id: int) -> int | None:
    """The plan's version; None when the plan is gone or the user no longer a member of it."""
    close_old_connections()
    return (
        Membership.objects.filter(plan_id=plan_id, user_id=user_id)
        .values_list("plan__version", flat=True)
        .first()
    )


MAX_ITEMS = 20


def _latest_activity(plan_id: int) -> int:
    return (
        Activity.objects.filter(plan_id=plan_id)
        .order_by("-id")
        .values_list("id", flat=True)
        .first()
        or 0
    )


def _changes_since(plan_id: int, since: int) -> tuple[list[dict[str, Any]] | None, int]:
    """The items changed after activity `since`, and the latest activity id. None instead of
    items when they are too many for item-by-item refreshing."""
    rows = list(
        Activity.objects.filter(plan_id=plan_id, id__gt=since)
        .order_by("id")
        .values("id", "action", "item_type", "item_id", "after")[: MAX_ITEMS + 1]
    )
    if len(rows) > MAX_ITEMS:
        return None, _latest_activity(plan_id)
    items = [
        {
            "type": row["item_type"],
            "id": row["item_id"],
            "action": row["action"],
            "fields": sorted(row["after"]) if isinstance(row["after"], dict) else [],
        }
        for row in rows
    ]
    return items, rows[-1]["id"] if rows else since


def _sse(event: str, data: Any, event_id: int | None = None) -> bytes:
    lines = []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append(f"event: {event}")
    lines.append(f"data: {json.dumps(data)}")
    return ("\n".join(lines) + "\n\n").encode()


async def stream(plan_id: int, user_id: int, last_version: int | None) -> AsyncIterator[bytes]:
    """Server-sent events for one open board: `changed` (with the plan's version; the id lets
    a reconnecting browser say what it saw) and `presence`."""
    connection = uuid.uuid4().hex
    waiter = _broker.add(plan_id)
    loop_event = waiter[1]
    version_of = sync_to_async(_version, thread_sensitive=False)
    latest_activity = sync_to_async(_latest_activity, thread_sensitive=False)
    changes_since = sync_to_async(_changes_since, thread_sensitive=False)
    presence_of = sync_to_async(present, thread_sensitive=False)
    touch = sync_to_async(touch_presence, thread_sensitive=False)
    try:
        await touch(plan_id, user_id, connection, "")
        await sync_to_async(_publish, thread_sensitive=False)(plan_id)
        yield b"retry: 1000\n\n"
        yield _sse("hello", {"connection": connection})
        seen_presence = None
        last_beat = asyncio.get_running_loop().time()
        # What changed is read from the activity record: the board then refreshes only those
        # items. After a reconnect the stream cannot know, and the board refreshes whole.
        last_activity = await latest_activity(plan_id)
        woken = True
        while True:
            version = await version_of(plan_id, user_id)
            if version is None:
                yield _sse("gone", {})
                return
            if version != last_version:
                items, last_activity = await changes_since(plan_id, last_activity)
                # One activity per version step: when they do not match (a reconnect, or a
                # change that wrote no activity such as a re-test's new observed value), the
                # board refreshes whole.
                if items is not None and (
                    last_version is None or len(items) != version - last_version
                ):
                    items = None
                yield _sse("changed", {"version": version, "items": items}, event_id=version)
                last_version = version
            now = asyncio.get_running_loop().time()
            beat = now - last_beat >= HEARTBEAT_SECONDS
            if beat:
                await touch(plan_id, user_id, connection)
                yield b": ping\n\n"
                last_beat = now
            # Presence changes always signal; only a closed tab's expiry does not, which the
            # heartbeat catches. So idle polls read the plan's version alone.
            if woken or beat:
                people = await presence_of(plan_id)
                if people != seen_presence:
                    yield _sse("presence", people)
                    seen_presence = people
            try:
                await asyncio.wait_for(loop_event.wait(), timeout=POLL_SECONDS)
                woken = True
            except TimeoutError:
                woken = False
            loop_event.clear()
    finally:
        _broker.remove(plan_id, waiter)
        await sync_to_async(leave_presence, thread_sensitive=False)(plan_id, connection)
