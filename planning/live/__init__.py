"""Live updates: tell every open board of a plan that it changed.

A change is a signal ("plan N is now at version V"); each board then re-fetches what it shows
through the normal, permission-checked views, as the signal's event tells it to. An open stream
holds no database connection while it waits.

- `signals`: publishing a change (after the commit) and hearing it, through Redis pub/sub and
  an in-process broker.
- `presence`: who has the plan open, and what they edit.
- `hub`: the open boards of one web process, their shared reads, their poller and limits.
- `stream`: one board's server-sent events.
- `events`: the events' schema, checked on every send.

Services and tasks call `plan_changed`; the views call `stream` and `touch_presence`.
"""

from __future__ import annotations

from .events import EventError, check
from .hub import Full, changes_between, close_pool, current_hub, read_state
from .presence import leave_presence, open_presence, present, touch_presence
from .signals import plan_changed, publish
from .stream import stream

__all__ = [
    "EventError",
    "Full",
    "changes_between",
    "check",
    "close_pool",
    "current_hub",
    "leave_presence",
    "open_presence",
    "plan_changed",
    "present",
    "publish",
    "read_state",
    "stream",
    "touch_presence",
]
