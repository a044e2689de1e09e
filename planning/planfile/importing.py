"""Import: make the database say what a plan file says, in one transaction.

Each object of the file goes through the form the web app uses for it (PlanForm, ScheduleForm,
StageForm, MembershipForm, ChoiceForm, AssumptionDataForm, InitiativeForm), against the plan as
written so far, and is written by the service the web app writes it with (board items by
`write_item`, members by the members page's services), so that the file and the app refuse the
same things in the same words and follow the same rules. A file with any error raises
PlanFileError listing all of them, and the transaction leaves nothing.
The import of the plan's items is one change in its activity (before and after as plan files),
which is also what tells open boards; who joins, changes role or leaves is recorded member by
member, as the members page records it.
"""

from __future__ import annotations

import copy
import secrets
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import models, transaction

from lifecycle.models import DEFAULT_STAGES, EventMapping, Stage
from lifecycle.services import map_event_types
from planning.forms import (
    AssumptionDataForm,
    ChoiceForm,
    InitiativeForm,
    ItemForm,
    MembershipForm,
    PlanForm,
    ScheduleForm,
    StageForm,
)
from planning.models import (
    WEEKDAYS,
    Activity,
    Assumption,
    BTInitiative,
    Comparator,
    Membership,
    Plan,
    Role,
    StrategicChoice,
)
from planning.services import User, changed_fields, create_plan, record_activity, snapshot
from planning.services.editing import write_item
from planning.services.people import MemberError, add_member, change_member, remove_member

from . import sections
from .exporting import export_plan
from .loading import PlanFileError, check_plan_data, kind_of, quoted
from .reading import (
    ASSUMPTION,
    CHOICE,
    INITIATIVE,
    MEMBER,
    PLAN,
    SCHEDULE,
    TEST,
    Entry,
    Errors,
    Node,
    check,
    clause,
    is_number,
)


def _default(model: type[models.Model], name: str) -> Any:
    field = model._meta.get_field(name)
    return field.get_default() if isinstance(field, models.Field) else None


def import_plan(data: dict[str, Any], *, actor: User | None = None) -> tuple[Plan, bool]:
    """Create the plan the file describes, or make the plan with its slug equal to the file.

    Returns (plan, created). Raises PlanFileError, having written nothing, when the file is wrong.
    """
    check_plan_data(data)
    errors = Errors()
    with transaction.atomic():
        top = Node(data, "", PLAN, errors)
        plan, before = _Import(top, errors, actor).run()
        if errors:
            raise PlanFileError(errors)  # and the transaction takes back what was written
        after = export_plan(plan)
        # Re-importing the file the plan already equals changes nothing, not even the history.
        if after != before:
            record_activity(
                plan,
                actor,
                Activity.Action.IMPORTED,
                "plan",
                item_id=plan.pk,
                item_label=plan.name,
                before=before,
                after=after,
            )
    plan.refresh_from_db()
    return plan, before is None


class _Import:
    """One file going in, object by object; what is written so far is what later objects name
    (their stages, owners and choices)."""

    def __init__(self, top: Node, errors: Errors, actor: User | None) -> None:
        self.top, self.errors, self.actor = top, errors, actor
        self.stages: dict[str, Stage] = {}  # by name in lower case
        self.members: dict[str, Membership] = {}  # by user name
        self.choices: dict[str, StrategicChoice] = {}  # by title
        # What the file names, written or not: an item in error is said once, not again by
        # each item that names it.
        self.stage_names: set[str] = set()
        self.usernames: set[str] = set()
        self.titles: set[str] = set()

    def run(self) -> tuple[Plan, dict[str, Any] | None]:
        plan, before = self.plan()
        self.write_stages(plan)
        self.write_event_map(plan)
        self.write_members(plan)
        self.write_choices(plan)
        self.write_initiatives(plan)
        self.write_sections(plan)
        return plan, before

    def write_sections(self, plan: Plan) -> None:
        """The parts other apps own (sections.py): checked, then written if the file is right."""
        for section in sections.sections():
            value = self.top.get(section.key)
            for key, message in section.problems(value) if value is not None else []:
                self.errors.add(self.top.at(section.key) + (f".{key}" if key else ""), message)
        if not self.errors:
            for section in sections.sections():
                section.write(plan, self.top.get(section.key), self.actor)

    # --- the plan --------------------------------------------------------------------------

    def plan(self) -> tuple[Plan, dict[str, Any] | None]:
        slug = self.top.get("slug")
        found = None
        if isinstance(slug, str):
            found = Plan.objects.select_for_update().filter(slug=slug).first()
        before = export_plan(found) if found else None
        instance = found or Plan()
        fields = (*PlanForm._meta.fields, *ScheduleForm._meta.fields)  # type: ignore[misc]
        old = {name: getattr(instance, name) for name in fields}
        entry = Entry(PlanForm, Plan, "")
        # The plan's own fields; its sections (stages, members, choices…) are written below.
        own = tuple(key for key in PLAN.keys if PLAN.field(key) in PlanForm._meta.fields)  # type: ignore[misc, operator]
        entry.take(self.top, own, self.errors)
        valid = check(PlanForm(entry.data, instance=instance), entry, self.errors, {})
        valid &= self.check_schedule(instance)
        if found is None:
            return self.new_plan(instance, valid), before
        if valid and any(getattr(found, name) != old[name] for name in fields):
            found.save()
        return found, before

    def check_schedule(self, plan: Plan) -> bool:
        written = self.top.get("retest_schedule")
        node = Node({} if written is None else written, "retest_schedule", SCHEDULE, self.errors)
        entry = Entry(ScheduleForm, Plan, node.path)
        entry.take(node, SCHEDULE.plain("weekday"), self.errors)
        weekday = node.get("weekday")
        if weekday is not None and weekday not in WEEKDAYS:
            node.error(
                "weekday",
                f"{quoted(weekday)} is not a weekday; choose one of {', '.join(WEEKDAYS)}",
            )
        index = WEEKDAYS.index(weekday) if weekday in WEEKDAYS else 0
        entry.give(SCHEDULE.field("weekday"), node.at("weekday"), weekday, index)
        return check(ScheduleForm(entry.data, instance=plan), entry, self.errors, {})

    def new_plan(self, plan: Plan, valid: bool) -> Plan:
        if not valid:
            # The rest of the file is still checked, against a plan that stands in for the one
            # the file cannot make; the transaction takes it back with everything else.
            return create_plan(
                "Plan file being checked", f"check-{secrets.token_hex(8)}", stages=[]
            )
        fields = ("description", *ScheduleForm._meta.fields)  # type: ignore[misc]
        values = {name: getattr(plan, name) for name in fields}
        return create_plan(plan.name, plan.slug, stages=[], **values)

    # --- stages and the event map -----------------------------------------------------------

    def write_stages(self, plan: Plan) -> None:
        """Stages are matched by name whatever its case; one the file no longer names goes,
        with its event-map lines (a rename cannot be told from a swap)."""
        if self.top.get("stages") is None:
            places = [(f"stages[{i}]", name) for i, name in enumerate(DEFAULT_STAGES)]
        else:
            places = self.top.values("stages")
        self.stage_names = {_key(name).lower() for _, name in places if isinstance(name, str)}
        existing = {stage.name.lower(): stage for stage in plan.stages.all()}
        plan.stages.exclude(
            pk__in=[s.pk for key, s in existing.items() if key in self.stage_names]
        ).delete()
        claims: dict[str, str] = {}
        for position, (place, name) in enumerate(places):
            if not isinstance(name, str):
                self.errors.add(place, f"must be a string, not {kind_of(name)}")
                continue
            key = _key(name).lower()
            taken = {"name": claims[key]} if key in claims else {}
            stored = None if taken else existing.get(key)
            before = snapshot(stored) if stored else None
            entry = Entry(StageForm, Stage, place)
            entry.give("name", place, name, name)
            instance = copy.copy(stored) if stored else Stage(plan=plan)
            form = StageForm(entry.data, plan=plan, instance=instance)
            if check(form, entry, self.errors, taken):
                self.stages[key] = _write(form, stored, before, position)
                claims[key] = place

    def write_event_map(self, plan: Plan) -> None:
        """Through the event map's own service; event types are stored lower-case (DOMAIN §4),
        so "Visit" and "visit" are one type."""
        lines = self.top.get("event_map")
        if lines is not None and not isinstance(lines, dict):
            self.top.error(
                "event_map", f"must be an object of event types and stages, not {kind_of(lines)}"
            )
            return
        field = EventMapping._meta.get_field("event_type")
        wanted: dict[str, Stage] = {}
        claims: dict[str, str] = {}
        for event_type, stage_name in (lines or {}).items():
            place = self.top.at(f"event_map.{event_type}")
            key = str(event_type).strip().lower()
            try:
                field.clean(key, None)
            except ValidationError as error:
                self.errors.add(place, _field_problem(error, key, field.max_length))
                continue
            if key in claims:
                self.errors.add(
                    place, f'"{event_type}" is already at {claims[key]}; each must be unique'
                )
                continue
            claims[key] = place
            stage = self.stage(stage_name, place)
            if stage is not None:
                wanted[key] = stage
        existing = dict(plan.event_map.values_list("event_type", "stage_id"))
        changes = {key: None for key in existing if key not in wanted} | {
            key: stage for key, stage in wanted.items() if existing.get(key) != stage.pk
        }
        if changes:
            map_event_types(plan.pk, changes)

    def stage(self, name: Any, place: str) -> Stage | None:
        """The written stage a value names, matched like the plan matches them: whatever the
        case. A stage in error is said once, where the file lists the stages."""
        key = _key(name).lower() if isinstance(name, str) else None
        if key in self.stages:
            return self.stages[key]
        if key not in self.stage_names:
            known = ", ".join(stage.name for stage in self.stages.values()) or "none"
            self.errors.add(place, f"{quoted(name)} is not a stage of this plan ({known})")
        return None

    def stage_ids(self, node: Node) -> list[int]:
        stages = (self.stage(name, place) for place, name in node.values("stages"))
        return [stage.pk for stage in stages if stage is not None]

    # --- members ----------------------------------------------------------------------------

    def write_members(self, plan: Plan) -> None:
        """Memberships by user name, each checked by the members page's form and written by
        its services (their rules, their activity). Leaving the plan ends a membership, never
        the user; a member who stays keeps their own settings (e-mail digests), which the file
        does not carry."""
        nodes = list(self.top.items("members", MEMBER))
        names = [node.text("username") for node in nodes]
        self.usernames = {name for name in names if name}
        users = _find_users(self.usernames)
        existing = {membership.user_id: membership for membership in plan.memberships.all()}
        wanted: list[_Member] = []
        claims: dict[str, str] = {}
        for node, name in zip(nodes, names, strict=True):
            user = users.get(name) if name else None
            if name and user is None:
                self.errors.add(node.path, f'no user "{name}"')
            elif name in claims:
                self.errors.add(
                    node.path, f'"{name}" is already at {claims[name]}; each must be unique'
                )
                continue
            stored = existing.get(user.pk) if user else None
            entry = Entry(MembershipForm, Membership, node.path)
            entry.take(node, MEMBER.plain("username"), self.errors)
            instance = copy.copy(stored) if stored else Membership(plan=plan, user=user)
            form = MembershipForm(entry.data, instance=instance)
            if check(form, entry, self.errors, {}) and user is not None and name is not None:
                role, unit = form.cleaned_data["role"], form.cleaned_data["business_unit"].strip()
                wanted.append(_Member(node, name, user, stored, role, unit))
                claims[name] = node.path
        named = {user.pk for user in users.values()}
        leaving = [m for user_id, m in existing.items() if user_id not in named]
        self.change_members(plan, wanted, leaving)

    def change_members(self, plan: Plan, wanted: list[_Member], leaving: list[Membership]) -> None:
        """Who joins first (in the file's order), then who changes role (new facilitators
        first), then who leaves: a plan that has a facilitator keeps one, whatever order the
        file lists people in."""
        changing: list[tuple[_Member, Membership]] = []
        for member in wanted:
            stored = member.stored
            if stored is None:
                stored = add_member(plan, self.actor, member.user, member.role, member.unit)
            elif (stored.role, stored.business_unit) != (member.role, member.unit):
                changing.append((member, stored))
            self.members[member.name] = stored
        for member, stored in sorted(changing, key=lambda each: each[0].role != Role.FACILITATOR):
            try:
                change_member(stored, self.actor, member.role, member.unit)
            except MemberError as error:
                member.node.error("role", clause(str(error)))
        for membership in leaving:
            try:
                remove_member(membership, self.actor)
            except MemberError as error:
                name = membership.user.get_username()
                self.top.error("members", f'"{name}" cannot leave the plan: {clause(str(error))}')

    def owner_id(self, node: Node) -> int | None:
        owner = node.get("owner")
        if owner is None:
            return None
        if isinstance(owner, str) and owner in self.members:
            return self.members[owner].pk
        if not isinstance(owner, str) or owner not in self.usernames:
            node.error("owner", f"{quoted(owner)} is not a member of the plan in this file")
        return None

    # --- choices and their assumptions ------------------------------------------------------

    def write_choices(self, plan: Plan) -> None:
        nodes = list(self.top.items("choices", CHOICE))
        self.titles = {_key(node.get("title")) for node in nodes}
        plan.choices.exclude(title__in=self.titles).delete()
        # Their stages read at once: a form for a stored item starts from its values.
        existing = {choice.title: choice for choice in plan.choices.prefetch_related("stages")}
        self.assumptions = self.stored_assumptions(plan, nodes, existing)
        claims: dict[str, str] = {}
        for position, node in enumerate(nodes):
            key = _key(node.get("title"))
            taken = {"title": claims[key]} if key in claims else {}
            stored = None if taken else existing.get(key)
            before = snapshot(stored) if stored else None
            entry = Entry(ChoiceForm, StrategicChoice, node.path)
            entry.take(node, CHOICE.plain("stages", "owner", "assumptions"), self.errors)
            entry.give("stages", node.at("stages"), node.get("stages"), self.stage_ids(node))
            entry.give("owner", node.at("owner"), node.get("owner"), self.owner_id(node))
            instance = copy.copy(stored) if stored else StrategicChoice(plan=plan)
            form = ChoiceForm(entry.data, plan=plan, instance=instance)
            choice = None
            if check(form, entry, self.errors, taken):
                choice = _write(form, stored, before, position)
                # Writing reads the row back, which forgets the plan; its assumptions' checks ask.
                choice.plan = plan
                self.choices[key] = choice
                claims[key] = node.at("title")
            self.write_assumptions(plan, node, choice)

    def stored_assumptions(
        self, plan: Plan, nodes: list[Node], choices: dict[str, StrategicChoice]
    ) -> dict[int, dict[str, Assumption]]:
        """The stored assumptions of the plan's choices, by choice and statement, read in one
        query; those the file no longer has under their choice are deleted first, in one go."""
        statements: dict[int, set[str]] = {}
        for node in nodes:
            choice = choices.get(_key(node.get("title")))
            written = node.get("assumptions")
            if choice is not None and choice.pk not in statements:
                statements[choice.pk] = {
                    _key(item.get("statement"))
                    for item in (written if isinstance(written, list) else [])
                    if isinstance(item, dict)
                }
        stored: dict[int, dict[str, Assumption]] = defaultdict(dict)
        gone = []
        for assumption in Assumption.objects.filter(choice__plan=plan):
            if assumption.statement in statements.get(assumption.choice_id, ()):
                stored[assumption.choice_id][assumption.statement] = assumption
            else:
                gone.append(assumption.pk)
        if gone:
            Assumption.objects.filter(pk__in=gone).delete()
        return stored

    def write_assumptions(self, plan: Plan, parent: Node, choice: StrategicChoice | None) -> None:
        """A choice's assumptions, matched by statement. Those of a choice in error are still
        checked, against no choice, and not written."""
        nodes = list(parent.items("assumptions", ASSUMPTION))
        existing = self.assumptions.get(choice.pk, {}) if choice is not None else {}
        claims: dict[str, str] = {}
        for position, node in enumerate(nodes):
            key = _key(node.get("statement"))
            taken = {"statement": claims[key]} if key in claims else {}
            stored = None if taken else existing.get(key)
            if stored is not None:
                stored.choice = choice  # type: ignore[assignment]  # its plan is this plan
            before = snapshot(stored) if stored else None
            entry = Entry(AssumptionDataForm, Assumption, node.path)
            entry.take(node, ASSUMPTION.plain("owner", "test"), self.errors)
            entry.give("owner", node.at("owner"), node.get("owner"), self.owner_id(node))
            tested = self.take_test(node, entry)
            instance = copy.copy(stored) if stored else Assumption(choice=choice)
            form = AssumptionDataForm(entry.data, plan=plan, instance=instance, tested=tested)
            if check(form, entry, self.errors, taken) and choice is not None:
                _write(form, stored, before, position)
                claims[key] = node.at("statement")

    def take_test(self, node: Node, entry: Entry) -> bool:
        """Give the form the assumption's test; without one (omitted or null) it is tracked by
        hand, and every test field takes the model's default."""
        written = node.get("test")
        if not isinstance(written, dict):
            if written is not None:
                node.error("test", f"must be an object {{…}}, not {kind_of(written)}")
            for name in Assumption.TEST_FIELDS:
                entry.give(name, node.at("test"), None, _default(Assumption, name))
            return False
        test = Node(written, node.at("test"), TEST, self.errors)
        entry.take(test, TEST.plain("threshold"), self.errors)
        self.take_thresholds(test, entry)
        return True

    def take_thresholds(self, test: Node, entry: Entry) -> None:
        """The file writes a test's thresholds as one value: a number, or [low, high] for
        "between"; which of the two depends on the comparator."""
        place, value, comparator = (
            test.at("threshold"),
            test.get("threshold"),
            test.get("comparator"),
        )
        low = high = None
        if comparator not in Comparator.values:
            self.errors.quiet(place)  # the comparator's own error says what is wrong
        elif comparator == Comparator.BETWEEN:
            if not (isinstance(value, list) and len(value) == 2 and all(map(is_number, value))):
                self.errors.add(
                    place, f'"between" takes [low, high], two numbers, not {kind_of(value)}'
                )
            elif value[0] > value[1]:
                self.errors.add(
                    place, f"the high threshold {value[1]} is below the low one {value[0]}"
                )
            else:
                low, high = value
        elif not is_number(value):
            self.errors.add(place, f'"{comparator}" takes one number, not {kind_of(value)}')
        else:
            low = value
        entry.give("threshold", place, value, low)
        entry.give("threshold_high", place, value, high)

    # --- BT initiatives ---------------------------------------------------------------------

    def write_initiatives(self, plan: Plan) -> None:
        nodes = list(self.top.items("bt_initiatives", INITIATIVE))
        plan.bt_initiatives.exclude(title__in={_key(node.get("title")) for node in nodes}).delete()
        stored_ones = plan.bt_initiatives.prefetch_related("stages", "choices")
        existing = {initiative.title: initiative for initiative in stored_ones}
        claims: dict[str, str] = {}
        for position, node in enumerate(nodes):
            key = _key(node.get("title"))
            taken = {"title": claims[key]} if key in claims else {}
            stored = None if taken else existing.get(key)
            before = snapshot(stored) if stored else None
            entry = Entry(InitiativeForm, BTInitiative, node.path)
            entry.take(node, INITIATIVE.plain("stages", "choices"), self.errors)
            entry.give("stages", node.at("stages"), node.get("stages"), self.stage_ids(node))
            entry.give("choices", node.at("choices"), node.get("choices"), self.choice_ids(node))
            instance = copy.copy(stored) if stored else BTInitiative(plan=plan)
            form = InitiativeForm(entry.data, plan=plan, instance=instance)
            if check(form, entry, self.errors, taken):
                _write(form, stored, before, position)
                claims[key] = node.at("title")

    def choice_ids(self, node: Node) -> list[int]:
        ids = []
        for place, title in node.values("choices"):
            key = _key(title) if isinstance(title, str) else None
            if key in self.choices:
                ids.append(self.choices[key].pk)
            elif key not in self.titles:  # a choice in error is said once, at the choice
                self.errors.add(place, f"{quoted(title)} is not the title of a choice in this file")
        return ids


@dataclass
class _Member:
    """A member the file names, checked: where, who, as stored (None: joining), and as wanted."""

    node: Node
    name: str
    user: Any
    stored: Membership | None
    role: str
    unit: str


def _key(value: Any) -> str:
    """What an item is matched by: its name as its form stores it (around spaces dropped)."""
    return value.strip() if isinstance(value, str) else ""


def _values(form: ItemForm) -> dict[str, Any]:
    """The form's values as the item will hold them, to compare with `snapshot`: the model's
    clean() may have normalised one (a test's params), so they are read off the instance."""
    values = form.values()
    for name in values:
        if not form.instance._meta.get_field(name).is_relation:
            values[name] = getattr(form.instance, name)
    return values


def _write(form: ItemForm, stored: Any, before: dict[str, Any] | None, position: int) -> Any:
    """Save the checked form's values at `position` through the board's own writer: onto the
    `stored` item (the form checked a copy of it), whose snapshot is `before`, or as a new item.
    An item the file leaves as it was is not written at all: its version and `updated_at`
    stay."""
    values = _values(form)
    if stored is None:
        return write_item(form.instance, values, position=position)
    if not changed_fields(before or {}, values) and stored.position == position:
        return stored
    for name in values:  # the owner the form looked up, not looked up again
        field = stored._meta.get_field(name)
        if field.many_to_one and field.is_cached(form.instance):
            setattr(stored, name, getattr(form.instance, name))
    return write_item(stored, values, position=position)


def _find_users(usernames: Iterable[str]) -> dict[str, Any]:
    """The users by user name, in one query."""
    user_model = get_user_model()
    lookup = {f"{user_model.USERNAME_FIELD}__in": list(usernames)}
    return {user.get_username(): user for user in user_model._default_manager.filter(**lookup)}


def _field_problem(error: ValidationError, value: str, max_length: int | None) -> str:
    """An event type's error (the model field's) in the file's words."""
    codes = {item.code for item in error.error_list}
    if "blank" in codes:
        return "an event type must not be blank"
    if "max_length" in codes:
        return f"is {len(value)} characters long; at most {max_length} fit"
    return " ".join(error.messages)
