"""The live board's events, as the server sends them: one schema, checked on every send.

The board's JavaScript knows no URL pattern, no kind of item and no field name: each `changed`
event says, per changed item, which cards (`key`, their `data-item`) to re-fetch from which
`url`, or that the board must be re-fetched whole (`items` null, or an item's `refresh` being
"board"). What moves a card comes from planning/kinds.py. Like zulip's event_schema, the
schema is plain data checked by one function, so a test can hold every event against it. What moves a card comes
from planning/kinds.py (see hub.changes_between).
"""

from __future__ import annotations

from typing import Any

# event name → field name → the types its value may have (None: JSON null).
Spec = dict[str, tuple[type | None, ...]]

ITEM: Spec = {"key": (str,), "url": (str,), "refresh": (str,)}
PERSON: Spec = {"id": (int,), "name": (str,), "role": (str,), "editing": (list,)}
SCHEMA: dict[str, Spec] = {
    "hello": {"connection": (str,)},
    "changed": {"version": (int,), "items": (list, None)},
    "gone": {},
    # The plan's running workshop session moved on (a step, the timer, a reveal): screens in
    # the room re-fetch it from `url`; other pages offer "Back to the room". session null: none.
    "room": {"session": (int, None), "revision": (int,), "url": (str,)},
    "busy": {"message": (str,)},
}
REFRESH = {"item", "board"}


class EventError(ValueError):
    pass


def check(event: str, data: Any) -> None:
    """Raise EventError when `data` is not what the board expects of `event`."""
    if event == "presence":
        for person in _list(data, event):
            _fields(person, PERSON, "presence person")
        return
    if event not in SCHEMA:
        raise EventError(f"unknown live event {event!r}")
    _fields(data, SCHEMA[event], event)
    if event == "changed" and data["items"] is not None:
        for item in data["items"]:
            _fields(item, ITEM, "changed item")
            if item["refresh"] not in REFRESH:
                raise EventError(f"changed item: refresh {item['refresh']!r}")


def _list(value: Any, where: str) -> list:
    if not isinstance(value, list):
        raise EventError(f"{where}: a list expected")
    return value


def _fields(value: Any, spec: Spec, where: str) -> None:
    if not isinstance(value, dict) or set(value) != set(spec):
        got = sorted(value) if isinstance(value, dict) else type(value).__name__
        raise EventError(f"{where}: fields {got}, expected {sorted(spec)}")
    for name, types in spec.items():
        item = value[name]
        allowed = tuple(t for t in types if t is not None)
        if item is None and None in types:
            continue
        if not isinstance(item, allowed) or isinstance(item, bool):
            raise EventError(f"{where}.{name}: {type(item).__name__} is not {types}")
