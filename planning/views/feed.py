"""The activity feed in words: each change a sentence ("Elena Ruiz edited the assumption …"),
its values as a CMO reads them (statuses and roles in words, a share as 27.4%, names not ids),
and a plan's re-test one line, however many assumptions it changed."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.exceptions import FieldDoesNotExist
from django.db import models

from ..kinds import KINDS
from ..models import Activity, Assumption, Comment, Invitation, Membership, Plan, display_name
from ..models.items import PARAM_LABELS

FIELD_LABELS = {
    "title": "Title",
    "statement": "Statement",
    "stages": "Stages",
    "owner": "Owner",
    "business_unit": "Business unit",
    "role": "Role",
    "horizon": "Horizon",
    "status": "Status",
    "rationale": "Rationale",
    "importance": "Importance",
    "evidence": "Evidence",
    "metric": "Metric",
    "params": "Parameters",
    "comparator": "Comparator",
    "threshold": "Threshold",
    "threshold_high": "Upper threshold",
    "min_sample": "Minimum sample",
    "segment": "Segment",
    "channel": "Channel",
    "window_days": "Window (days)",
    "choices": "Serves",
    "cost_estimate": "Cost estimate",
    "name": "Name",
    "position": "Position",
    "body": "Comment",
    "observed": "Observed",
    "retest_cadence": "Re-test",
    "retest_weekday": "Weekday",
    "retest_time": "Time of day",
    "retest_timezone": "Time zone",
    "period": "Period",
    "invited_by": "Invited by",
}
# The model whose fields name an activity's values (and give their choices in words).
MODELS: dict[str, type[models.Model]] = {
    **{kind.name: kind.model for kind in KINDS.values()},
    "member": Membership,
    "invitation": Invitation,
    "schedule": Plan,
    "period": Plan,
    "plan": Plan,
}
# Values of a test measured by its metric: shown as the metric shows them (27.4%, 1,250).
MEASURED = {"observed", "threshold", "threshold_high"}
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
TRIGGERS = {
    "scheduled": " on its schedule",
    "manual": " on request",
    "command": " from the command line",
}
LONGEST = 160
RETESTED_SHOWN = 6


@dataclass
class Change:
    label: str
    before: str
    after: str


@dataclass
class Retested:
    """One assumption whose status a plan re-test changed."""

    item_id: int | None
    statement: str
    before: str
    before_label: str
    after: str
    after_label: str
    observed: str


@dataclass
class Line:
    """One line of the feed: `who` `verb` “`label`” `tail`, then what changed."""

    entry: Activity
    who: str
    verb: str
    label: str = ""
    quoted: bool = True
    tail: str = ""
    changes: list[Change] = field(default_factory=list)
    quote: str = ""
    url: str = ""  # where the label links, when not to the item's own activity
    retested: list[Retested] = field(default_factory=list)
    revertible: bool = False

    # A re-test that changed many assumptions shows a few; the others are one click away.
    @property
    def retested_first(self) -> list[Retested]:
        return self.retested[:RETESTED_SHOWN]

    @property
    def retested_more(self) -> list[Retested]:
        return self.retested[RETESTED_SHOWN:]


@dataclass
class Names:
    """What ids in the plan's activity stand for."""

    stages: dict[int, str]
    choices: dict[int, str]
    owner: dict[int, str]
    metrics: dict[int, str]
    usernames: set[str] = field(default_factory=set)
    comments: dict[int, str] = field(default_factory=dict)  # a comment's own address

    @classmethod
    def of(cls, plan: Plan, people: Iterable[Membership], entries: list[Activity]) -> Names:
        people = list(people)
        return cls(
            stages=dict(plan.stages.values_list("pk", "name")),
            choices=dict(plan.choices.values_list("pk", "title")),
            owner={m.pk: m.display_name for m in people},
            metrics=dict(Assumption.objects.filter(choice__plan=plan).values_list("pk", "metric")),
            usernames={m.user.get_username() for m in people},
            comments=_comment_urls(plan, entries),
        )


def _comment_urls(plan: Plan, entries: list[Activity]) -> dict[int, str]:
    """Where each commented comment is read: its thread, at the comment."""
    ids = [e.item_id for e in entries if e.item_type == "comment" and e.item_id]
    found = Comment.objects.filter(plan=plan, pk__in=ids).only(
        "pk", "plan_id", "choice_id", "assumption_id"
    )
    urls = {}
    for comment in found:
        comment.plan = plan  # at hand: its address needs the plan's slug
        urls[comment.pk] = comment.get_absolute_url()
    return urls


def feed_lines(entries: list[Activity], names: Names, membership: Membership) -> list[Line]:
    """The entries, newest first, as lines: the assumptions one plan re-test changed, one line."""
    lines: list[Line] = []
    for entry in entries:
        batch = _batch(entry)
        last = lines[-1] if lines else None
        if batch and last is not None and last.retested and _batch(last.entry) == batch:
            last.retested.append(_retested(entry, names))
            count = len(last.retested)
            last.tail = _retest_tail(entry, count)
            continue
        lines.append(_line(entry, names, membership))
    for line in lines:
        line.retested.reverse()  # newest first is the plan's order backwards
    return lines


def _batch(entry: Activity) -> str:
    if entry.action != Activity.Action.TESTED or not isinstance(entry.after, dict):
        return ""
    return str(entry.after.get("_retest") or "")


def who_of(entry: Activity) -> str:
    if entry.actor is None:
        return "Outside-In"
    return display_name(entry.actor)


def _line(entry: Activity, names: Names, membership: Membership) -> Line:
    kind = KINDS.get(entry.item_type)
    line = Line(entry=entry, who=who_of(entry), verb="", label=entry.item_label)
    action = entry.action
    if action == Activity.Action.TESTED and _batch(entry):
        line.verb, line.label = "re-tested the plan", ""
        line.retested = [_retested(entry, names)]
        line.tail = _retest_tail(entry, 1)
        return line
    if kind is not None:
        _kind_sentence(line, kind.label)
        line.revertible = (
            membership.can_edit
            and action not in {Activity.Action.MOVED, Activity.Action.TESTED}
            and (not kind.facilitators_only or membership.can_manage)
        )
    else:
        _other_sentence(line, names)
    if action in {Activity.Action.UPDATED, Activity.Action.REVERTED, Activity.Action.TESTED}:
        line.changes = describe_change(entry, names)
    return line


def _kind_sentence(line: Line, noun: str) -> None:
    entry = line.entry
    verbs: dict[str, str] = {
        Activity.Action.CREATED: f"added the {noun}",
        Activity.Action.UPDATED: f"edited the {noun}",
        Activity.Action.DELETED: f"deleted the {noun}",
        Activity.Action.MOVED: f"moved the {noun}",
        Activity.Action.REVERTED: f"reverted a change to the {noun}",
        Activity.Action.TESTED: f"re-tested the {noun}",
    }
    line.verb = verbs.get(entry.action, f"{entry.get_action_display()} the {noun}")
    if entry.action == Activity.Action.MOVED:
        before = (entry.before or {}).get("position")
        after = (entry.after or {}).get("position")
        if isinstance(before, int) and isinstance(after, int) and before != after:
            line.tail = " up" if after < before else " down"


# What is not an item of the board: (item type, action) → the verb before its label, the words
# after it, and whether the label is quoted (a title is; a person or an address is not).
SENTENCES: dict[tuple[str, str], tuple[str, str, bool]] = {
    ("comment", "created"): ("commented", "", False),
    ("member", "created"): ("added", " to the plan", False),
    ("member", "updated"): ("edited the member", "", False),
    ("member", "deleted"): ("removed", " from the plan", False),
    ("invitation", "sent"): ("invited", "", False),
    ("invitation", "deleted"): ("withdrew the invitation of", "", False),
    ("invitation", "declined"): ("declined the invitation sent to", "", False),
    ("plan", "created"): ("started the plan", "", True),
    ("plan", "imported"): ("loaded a plan file into", "", True),
    ("schedule", "updated"): ("set the re-test schedule to", "", False),
    ("period", "updated"): ("set the period of figures and histories to", "", False),
    ("import", "reverted"): ("undid the import of", "", True),
}


def _other_sentence(line: Line, names: Names) -> None:
    entry = line.entry
    after = entry.after if isinstance(entry.after, dict) else {}
    before = entry.before if isinstance(entry.before, dict) else {}
    fallback = (f"{entry.get_action_display()} the {entry.item_type.replace('_', ' ')}", "", True)
    line.verb, line.tail, line.quoted = SENTENCES.get((entry.item_type, entry.action), fallback)
    if entry.item_type == "comment":
        line.quote = _short(str(after.get("body") or before.get("body") or ""))
        line.url = names.comments.get(entry.item_id or 0, "")
    elif entry.item_type == "invitation" and entry.action == Activity.Action.SENT:
        role = _choice_label(Invitation, "role", after.get("role"))
        line.tail = f" as {role}" if role else ""
    elif entry.item_type == "schedule":  # "Weekly on Mondays at 07:00 UTC", mid-sentence
        line.label = entry.item_label[:1].lower() + entry.item_label[1:]


def _retest_tail(entry: Activity, count: int) -> str:
    trigger = TRIGGERS.get(str((entry.after or {}).get("_trigger") or ""), "")
    changed = f"{count} assumption{'s' if count != 1 else ''} changed status"
    return f"{trigger}: {changed}"


def _retested(entry: Activity, names: Names) -> Retested:
    before = (entry.before or {}).get("status") or ""
    after = entry.after or {}
    status = after.get("status") or ""
    metric = names.metrics.get(entry.item_id or 0, "")
    return Retested(
        item_id=entry.item_id,
        statement=entry.item_label,
        before=before,
        before_label=_choice_label(Assumption, "status", before) or "—",
        after=status,
        after_label=_choice_label(Assumption, "status", status) or "—",
        observed=(
            Assumption(metric=metric).format_value(after["observed"])
            if isinstance(after.get("observed"), int | float)
            else ""
        ),
    )


def describe_change(entry: Activity, names: Names) -> list[Change]:
    """Before → after, field by field, for the fields the change touched, in words."""
    before = entry.before if isinstance(entry.before, dict) else {}
    after = entry.after if isinstance(entry.after, dict) else {}
    if entry.action in {"created", "deleted"} or entry.item_type == "plan":
        return []
    fields = [n for n in dict.fromkeys([*before, *after]) if not n.startswith("_")]
    # A threshold is shown as its metric shows values: the metric the change gave it, else
    # the one the assumption has now.
    metric = str(after.get("metric") or before.get("metric") or "")
    if not metric and entry.item_type == "assumption":
        metric = names.metrics.get(entry.item_id or 0, "")
    return [
        Change(
            label=FIELD_LABELS.get(n, n.replace("_", " ").capitalize()),
            before=show_value(entry.item_type, n, before.get(n), names, metric),
            after=show_value(entry.item_type, n, after.get(n), names, metric),
        )
        for n in fields
    ]


def show_value(item_type: str, name: str, value: Any, names: Names, metric: str = "") -> str:
    """One recorded value as words: ids as names, choices as their labels, numbers formatted."""
    if value in (None, "", [], {}):
        return "—"
    lookup = {"stages": names.stages, "choices": names.choices, "owner": names.owner}.get(name)
    if lookup is not None:
        ids = value if isinstance(value, list) else [value]
        gone = "a former member" if name == "owner" else "(removed)"
        return _short(", ".join(lookup.get(i, gone) for i in ids if i is not None))
    if name in MEASURED and isinstance(value, int | float) and not isinstance(value, bool):
        return Assumption(metric=metric).format_value(value)
    if name == "retest_weekday" and isinstance(value, int) and 0 <= value < 7:
        return WEEKDAYS[value]
    if name == "retest_time" and isinstance(value, str):
        try:  # as stored, "07:00:00": as a clock reads it
            return f"{dt.time.fromisoformat(value):%H:%M}"
        except ValueError:
            pass
    if name == "params" and isinstance(value, dict):
        return _short("; ".join(f"{PARAM_LABELS.get(k, k)}: {v}" for k, v in value.items()))
    model = MODELS.get(item_type)
    label = _choice_label(model, name, value) if model else None
    if label:
        return label
    if model is not None and _is_decimal(model, name):
        return _number(value)
    return _plain(value)


def _choice_label(model: type[models.Model] | None, name: str, value: Any) -> str | None:
    if model is None or value in (None, ""):
        return None
    try:
        model_field = model._meta.get_field(name)
    except FieldDoesNotExist:
        return None
    choices = dict(getattr(model_field, "flatchoices", None) or [])
    label = choices.get(value)
    return str(label) if label is not None else None


def _is_decimal(model: type[models.Model], name: str) -> bool:
    try:
        return isinstance(model._meta.get_field(name), models.DecimalField)
    except FieldDoesNotExist:
        return False


def _number(value: Any) -> str:
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return _short(str(value))
    if number == number.to_integral_value():
        return f"{int(number):,}"
    if abs(number) >= 1:
        return f"{number:,.2f}"
    return f"{float(number):.3g}"


def _plain(value: Any) -> str:
    if isinstance(value, bool):
        return "Yes" if value else "No"
    if isinstance(value, int | float | Decimal):
        return _number(value)
    if isinstance(value, dict):
        return _short("; ".join(f"{k}: {_plain(v)}" for k, v in value.items()))
    if isinstance(value, list):
        return _short(", ".join(_plain(v) for v in value))
    return _short(str(value))


def _short(text: str) -> str:
    return text if len(text) <= LONGEST else text[: LONGEST - 1] + "…"
