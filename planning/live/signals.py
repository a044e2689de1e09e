"""Signals: "plan N changed", from any process to every web process's open boards.

Through Redis pub/sub when REDIS_URL is set (one subscriber per process), and always through
the in-process broker; a signal lost on the way only delays an update (each process also polls
the versions of the plans it watches, planning/live/hub.py).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction
from django.db.models import F

from ..models import Plan

if TYPE_CHECKING:
    from .hub import Hub

log = logging.getLogger("planning.live")

CHANNEL_PREFIX = "outside-in:plan:"


def plan_changed(plan_id: int, *, bump: bool = False) -> None:
    """Signal a change once the surrounding transaction commits. `bump` raises the plan's
    version for changes that wrote no activity (a re-test's new observed value)."""
    if bump:
        Plan.objects.filter(pk=plan_id).update(version=F("version") + 1)
    transaction.on_commit(lambda: publish(plan_id))


def publish(plan_id: int) -> None:
    broker.wake(plan_id)
    if settings.REDIS_URL:
        try:
            redis_client().publish(f"{CHANNEL_PREFIX}{plan_id}", "1")
        except Exception as error:  # the poll still delivers it; a lost signal only delays
            # an update. No traceback: it would keep the caller's frames (and their database
            # connection) alive, and "Redis is down" says it all.
            log.warning("could not publish a live update for plan %s: %s", plan_id, str(error))


_redis_clients: dict[str, Any] = {}


def redis_client():
    """The publishing client for the configured Redis. Short timeouts: publishing runs after a
    save, in the request, and a Redis that does not answer must not hold the save's response."""
    url = settings.REDIS_URL
    if url not in _redis_clients:
        import redis

        _redis_clients[url] = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    return _redis_clients[url]


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


broker = Broker()
