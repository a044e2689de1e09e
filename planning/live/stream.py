"""The event stream of one open board (server-sent events)."""

from __future__ import annotations

import asyncio
import json
import uuid
import weakref
from collections.abc import AsyncIterator, Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.db import connections
from django.urls import reverse

from . import events
from . import hub as hubs
from .hub import current_hub, db
from .presence import leave_presence, open_presence
from .signals import publish


def _sse(event: str, data: Any, event_id: int | None = None) -> bytes:
    events.check(event, data)  # the board relies on it: never send what it cannot read
    lines = []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append(f"event: {event}")
    lines.append(f"data: {json.dumps(data)}")
    return ("\n".join(lines) + "\n\n").encode()


def room_event(state: hubs.PlanState) -> dict[str, Any]:
    if state.room is None:
        return {"session": None, "revision": 0, "url": ""}
    session, revision = state.room
    url = reverse("planning:session", args=[state.slug, session])
    return {"session": session, "revision": revision, "url": url}


def stream(plan_id: int, user_id: int, last_version: int | None) -> AsyncIterator[bytes]:
    """The events for one open board, its place reserved now (Full when there is none). The
    place is given back when the stream ends, or when it is dropped without ever starting."""
    release = current_hub().reserve(user_id)
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
    here = current_hub()
    watch = here.watch(plan_id, connection)
    try:
        await db(open_presence)(plan_id, user_id, connection)
        await db(publish)(plan_id)
        yield b"retry: 1000\n\n"
        yield _sse("hello", {"connection": connection})
        seen_presence = None
        seen_room: tuple[int, int] | None = None  # told only while a session runs
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
                    items = await watch.changes(state, last_activity)
                    if items is not None and len(items) != state.version - last_version:
                        items = None
                yield _sse(
                    "changed", {"version": state.version, "items": items}, event_id=state.version
                )
                last_version = state.version
            last_activity = state.latest_activity
            if state.room != seen_room:
                yield _sse("room", room_event(state))
                seen_room = state.room
            people = await watch.presence()
            if people != seen_presence:
                yield _sse("presence", people)
                seen_presence = people
            try:
                await asyncio.wait_for(tick.wait(), timeout=hubs.HEARTBEAT_SECONDS)
            except TimeoutError:
                yield b": ping\n\n"
    finally:
        here.unwatch(plan_id, connection)
        release()
        await db(leave_presence)(plan_id, connection)
