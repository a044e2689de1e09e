"""Editing items together: snapshots, versioned saves, conflicts, delete, move, revert."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import IntegrityError, models, transaction
from django.db.models import F

from .. import kinds
from ..kinds import KINDS
from ..models import (
    Activity,
    Assumption,
    Plan,
    StrategicChoice,
)
from .plans import record_activity

# --- editing items together: snapshots, versioned saves, conflicts, revert ---------------------
# What each kind of item is (its model, editable fields, unique name, parent) is said once, in
# planning/kinds.py; these views of it stay for the callers that read them.
EDITABLE: dict[str, list[str]] = {kind.name: list(kind.editable) for kind in KINDS.values()}
MODELS: dict[str, type[models.Model]] = {kind.name: kind.model for kind in KINDS.values()}


def kind_of(item: models.Model) -> str:
    return kinds.kind_of(item).name


def _field(item_or_model: Any, name: str) -> Any:
    return item_or_model._meta.get_field(name)


def snapshot(item: models.Model) -> dict[str, Any]:
    """The item's editable values as plain JSON values (ids for relations)."""
    values: dict[str, Any] = {}
    for name in kinds.kind_of(item).editable:
        field = _field(item, name)
        if field.many_to_many:
            values[name] = sorted(getattr(item, name).values_list("pk", flat=True))
        elif field.is_relation:
            values[name] = getattr(item, field.attname)
        else:
            value = getattr(item, name)
            values[name] = str(value) if isinstance(value, Decimal) else value
    return values


def label_of(item: models.Model) -> str:
    return str(getattr(item, kinds.kind_of(item).unique, None) or item)


def write_item[M: models.Model](
    item: M, values: dict[str, Any], *, position: int | None = None, **extra: Any
) -> M:
    """The one place a board item's row is written: `item` as stored (or a new one), its
    editable `values` (plain values, ids for relations, as `snapshot` gives them), its
    `position`, and `extra` fields of the model. A stored item goes up a version, so that open
    boards and open forms see it changed; a name taken meanwhile is NameTaken. An assumption
    whose test changes loses its verdict. Records no activity: the board's saves record one
    per item (`save_item`, `create_item`), a plan file one per import."""
    test_before = _test_of(item)
    many = {}
    for name, value in values.items():
        field = _field(item, name)
        if field.many_to_many:
            many[name] = value
        else:
            setattr(item, field.attname, value)
    for name, value in extra.items():
        setattr(item, name, value)
    if position is not None:
        item.position = position  # type: ignore[attr-defined]
    item.full_clean(exclude=["plan", "choice"], validate_unique=False, validate_constraints=False)
    if test_before is not None and changed_fields(test_before, _test_of(item) or {}):
        for name, value in NO_VERDICT.items():  # the verdict of an old test is misleading
            setattr(item, name, value)
    stored = item.pk is not None
    if stored:
        item.version = F("version") + 1  # type: ignore[attr-defined]
    _save_unique(item)
    if stored:
        item.refresh_from_db()
    for name, ids in many.items():
        getattr(item, name).set(ids)
    return item


def _test_of(item: models.Model) -> dict[str, Any] | None:
    """A stored assumption's test, as its clean() leaves it (params normalised)."""
    if not isinstance(item, Assumption) or item.pk is None:
        return None
    return {name: getattr(item, name) for name in Assumption.TEST_FIELDS}


def _apply(item: models.Model, values: dict[str, Any]) -> None:
    write_item(item, values)


@dataclass
class Conflict:
    """Someone saved the same fields since this form was opened: theirs and mine, field by field."""

    current: models.Model
    fields: list[str]
    base: dict[str, Any]
    theirs: dict[str, Any]
    mine: dict[str, Any]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, Decimal)) and not isinstance(value, bool)


def _equal(a: Any, b: Any) -> bool:
    """Equal as values: 3 and 3.0 are, and a number and its decimal string; two strings only
    when they are the same text ("1.0" is another title than "1")."""
    if (_is_number(a) and isinstance(b, (int, float, Decimal, str))) or (
        _is_number(b) and isinstance(a, str)
    ):
        try:
            return Decimal(str(a)) == Decimal(str(b))
        except ArithmeticError:
            return False
    return a == b


def changed_fields(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    return [name for name in after if not _equal(before.get(name), after[name])]


def save_item(
    item: models.Model,
    actor: User,
    *,
    base_version: int,
    base: dict[str, Any],
    mine: dict[str, Any],
) -> models.Model | Conflict:
    """Save a member's edit without ever overwriting a change they have not seen.

    `base` is what the form showed, `mine` what was submitted. Fields only I changed are
    saved, whatever else changed meanwhile; a field that someone else changed too (to
    something else) makes a Conflict, and nothing is saved.
    """
    return _save(item, actor, base_version=base_version, base=base, mine=mine)[0]


def _save(
    item: models.Model,
    actor: User,
    *,
    base_version: int,
    base: dict[str, Any],
    mine: dict[str, Any],
) -> tuple[models.Model | Conflict, Activity | None]:
    model = type(item)
    with transaction.atomic():
        current = model._default_manager.select_for_update().get(pk=item.pk)
        now = snapshot(current)
        mine_changed = [f for f in changed_fields(base, mine) if f in now]
        if current.version != base_version:  # type: ignore[attr-defined]
            clashes = [
                f
                for f in mine_changed
                if not _equal(now[f], base.get(f)) and not _equal(now[f], mine[f])
            ]
            if clashes:
                return Conflict(current, clashes, base, now, mine), None
        changes = {f: mine[f] for f in mine_changed if not _equal(now[f], mine[f])}
        if not changes:
            return current, None
        _apply(current, changes)
        saved = snapshot(current)  # as stored: "Purchase" becomes "purchase", 1 becomes 1.0
        entry = record_activity(
            _plan_of(current),
            actor,
            "updated",
            kind_of(current),
            item_id=current.pk,
            item_label=label_of(current),
            before={f: now[f] for f in changes},
            after={f: saved[f] for f in changes},
        )
        return current, entry


def _plan_of(item: models.Model) -> Plan:
    if isinstance(item, Assumption):
        return item.choice.plan
    return item.plan  # type: ignore[attr-defined]


def create_item(
    kind: str, plan: Plan, actor: User, values: dict[str, Any], **parent: Any
) -> models.Model:
    return _create(kind, plan, actor, values, **parent)[0]


def _create(
    kind: str, plan: Plan, actor: User, values: dict[str, Any], **parent: Any
) -> tuple[models.Model, Activity]:
    spec = KINDS[kind]
    owner = {} if spec.parent else {"plan": plan}
    with transaction.atomic():
        item = spec.model(**owner, **parent)
        write_item(item, values, position=spec.siblings(item).count())
        entry = record_activity(
            plan,
            actor,
            "created",
            kind,
            item_id=item.pk,
            item_label=label_of(item),
            after=snapshot(item),
        )
    return item, entry


class NameTaken(ValidationError):
    """Another item has this name now: a member took it after this one's form checked it."""


def _save_unique(item: models.Model) -> None:
    """Save the item. The form checked that its name is free, but another member may have taken
    it since: then the database's unique constraint refuses the row, and the member hears what
    the form would have said, not a server error."""
    try:
        with transaction.atomic():  # a savepoint: the transaction goes on after the refusal
            item.save()
    except IntegrityError:
        spec = kinds.kind_of(item)
        lookup = f"{spec.unique}__iexact" if spec.unique_ignores_case else spec.unique
        taken = spec.siblings(item).filter(**{lookup: getattr(item, spec.unique)})
        if taken.exclude(pk=item.pk).exists():
            raise NameTaken({spec.unique: spec.duplicate}) from None
        raise


def delete_item(item: models.Model, actor: User) -> Activity:
    """Delete an item; the activity keeps all of it (assumptions of a choice too) for a revert."""
    kind = kind_of(item)
    plan = _plan_of(item)
    with transaction.atomic():
        # Locked, so that what the activity keeps is what was deleted, not an older version.
        item = type(item)._default_manager.select_for_update().get(pk=item.pk)
        before = snapshot(item)
        spec = kinds.kind_of(item)
        before["_parent"] = getattr(item, spec.parent_field) if spec.parent else None
        if isinstance(item, Assumption):
            before["_verdict"] = _verdict(item)
        if isinstance(item, StrategicChoice):
            before["_assumptions"] = [
                {**snapshot(a), "_verdict": _verdict(a)}
                for a in item.assumptions.order_by("position", "id")
            ]
        entry = record_activity(
            plan, actor, "deleted", kind, item_id=item.pk, item_label=label_of(item), before=before
        )
        item.delete()
    return entry


VERDICT_FIELDS = ["status", "observed", "sample_size", "ci_low", "ci_high", "last_run_at"]
# What an assumption holds from running its test: its verdict and its early warning (§10).
NO_VERDICT = {
    name: Assumption._meta.get_field(name).get_default()  # type: ignore[union-attr]
    for name in (*VERDICT_FIELDS, "drift_since", "drift_direction", "drift_message")
}


def _verdict(assumption: Assumption) -> dict[str, Any]:
    """The latest re-test's verdict, so that a restored assumption shows it again."""
    verdict = {name: getattr(assumption, name) for name in VERDICT_FIELDS}
    if verdict["last_run_at"] is not None:
        verdict["last_run_at"] = verdict["last_run_at"].isoformat()
    return verdict


def move_item(item: models.Model, actor: User, direction: int) -> None:
    """Move a choice, assumption, initiative or stage one place up (-1) or down (+1)."""
    kind = kind_of(item)
    plan = _plan_of(item)
    with transaction.atomic():
        siblings = list(KINDS[kind].siblings(item).select_for_update().order_by("position", "id"))
        index = next(i for i, s in enumerate(siblings) if s.pk == item.pk)
        target = index + direction
        if not 0 <= target < len(siblings):
            return
        siblings[index], siblings[target] = siblings[target], siblings[index]
        for position, sibling in enumerate(siblings):
            if sibling.position != position:
                type(sibling)._default_manager.filter(pk=sibling.pk).update(
                    position=position, version=F("version") + 1
                )
        record_activity(
            plan,
            actor,
            "moved",
            kind,
            item_id=item.pk,
            item_label=label_of(item),
            before={"position": index},
            after={"position": target},
        )


class RevertError(Exception):
    pass


def revert_activity(activity: Activity, actor: User) -> Activity:
    """Undo one change; the revert is itself a change, recorded like any other, and points at
    the change it reverts."""
    kind = activity.item_type
    if kind not in MODELS:
        raise RevertError("This kind of change cannot be reverted.")
    try:
        with transaction.atomic():
            entry = _revert(activity, actor)
            entry.reverts = activity
            Activity.objects.filter(pk=entry.pk).update(reverts=activity)
            return entry
    except (IntegrityError, NameTaken):
        raise RevertError(
            "Another item of this plan has the same name now; rename one of them first."
        ) from None
    except ValidationError as error:
        raise RevertError(" ".join(error.messages)) from None


def _revert(activity: Activity, actor: User) -> Activity:
    kind = activity.item_type
    model = MODELS[kind]
    if activity.action == Activity.Action.CREATED:
        item = model._default_manager.filter(pk=activity.item_id).first()
        if item is None:
            raise RevertError("It was deleted already.")
        return delete_item(item, actor)
    if activity.action == Activity.Action.DELETED:
        return _restore(kind, activity.plan, actor, activity.before or {})
    if activity.action == Activity.Action.UPDATED:
        item = model._default_manager.filter(pk=activity.item_id).first()
        if item is None:
            raise RevertError("The item was deleted since; revert its deletion first.")
        before = {k: v for k, v in (activity.before or {}).items() if k in EDITABLE[kind]}
        after = activity.after or {}
        _drop_missing(kind, before)
        # Based on what that change left: a field changed again since is a conflict, never
        # silently overwritten; a field changed back already is simply left as it is.
        result, entry = _save(
            item,
            actor,
            base_version=-1,
            base={name: after.get(name) for name in before},
            mine=before,
        )
        if isinstance(result, Conflict):
            raise RevertError("It changed again since.")
        if entry is None:
            raise RevertError("Nothing to revert: it is as it was before that change.")
        return entry
    raise RevertError("This kind of change cannot be reverted.")


def _restore(kind: str, plan: Plan, actor: User, before: dict[str, Any]) -> Activity:
    """Create a deleted item again (a choice with its assumptions); the choice's own activity
    is the revert's."""
    values = {k: v for k, v in before.items() if not k.startswith("_")}
    spec = KINDS[kind]
    parent = {spec.parent_field: before["_parent"]} if spec.parent else {}
    if (
        spec.parent
        and not KINDS[spec.parent].model._default_manager.filter(pk=before["_parent"]).exists()
    ):
        raise RevertError(
            f"Its {KINDS[spec.parent].label} was deleted since; revert that deletion first."
        )
    _drop_missing(kind, values)
    item, entry = _create(kind, plan, actor, values, **parent)
    if kind == "assumption":
        _restore_verdict(item.pk, before.get("_verdict"))
    for nested in before.get("_assumptions", []):
        nested_values = {k: v for k, v in nested.items() if not k.startswith("_")}
        _drop_missing("assumption", nested_values)
        assumption = create_item("assumption", plan, actor, nested_values, choice_id=item.pk)
        _restore_verdict(assumption.pk, nested.get("_verdict"))
    return entry


def _restore_verdict(pk: int, verdict: dict[str, Any] | None) -> None:
    if verdict:
        Assumption.objects.filter(pk=pk).update(
            **{k: v for k, v in verdict.items() if k in VERDICT_FIELDS}
        )


def _drop_missing(kind: str, values: dict[str, Any]) -> None:
    """Relations to things deleted since are left empty rather than failing the revert."""
    model = KINDS[kind].model
    for name in list(values):
        field = _field(model, name)
        if not field.is_relation or not values[name]:
            continue
        related = field.related_model._default_manager
        if field.many_to_many:
            values[name] = list(related.filter(pk__in=values[name]).values_list("pk", flat=True))
        elif not related.filter(pk=values[name]).exists():
            values[name] = None
