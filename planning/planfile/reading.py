"""Reading a plan file: every problem found, each located, before anything is written."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError

from lifecycle.models import DEFAULT_STAGES
from planning.models import (
    WEEKDAYS,
    Cadence,
    ChoiceStatus,
    Comparator,
    Horizon,
    InitiativeStatus,
    Metric,
    Role,
    clean_metric_params,
    one_line_problem,
    validate_timezone,
)

# The keys of each object, in the order the file writes them (DOMAIN §6).
PLAN_KEYS = (
    "name",
    "slug",
    "description",
    "stages",
    "event_map",
    "members",
    "retest_schedule",
    "choices",
    "bt_initiatives",
)
MEMBER_KEYS = ("username", "role", "business_unit")
SCHEDULE_KEYS = ("cadence", "weekday", "time", "timezone")
CHOICE_KEYS = (
    "title",
    "stages",
    "status",
    "horizon",
    "owner",
    "business_unit",
    "rationale",
    "assumptions",
)
ASSUMPTION_KEYS = ("statement", "importance", "evidence", "owner", "test")
TEST_KEYS = (
    "metric",
    "params",
    "comparator",
    "threshold",
    "min_sample",
    "segment",
    "channel",
    "window_days",
)
INITIATIVE_KEYS = ("title", "stages", "choices", "cost_estimate", "status")

# PostgreSQL's integer: larger whole numbers would fail at write time, after validation.
MAX_INT = 2**31 - 1
# BTInitiative.cost_estimate is DECIMAL(14, 2).
MAX_COST = Decimal(10) ** 12
TIME_RE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?$")


class PlanFileError(Exception):
    """A plan file that cannot be imported; `errors` lists every problem found, each located."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


def load_plan_file(source: str | bytes | Path | IO[Any]) -> dict[str, Any]:
    """Parse a plan file given as a path, an open file or its JSON text; PlanFileError says
    what is wrong. Its size and depth are checked before it is parsed: a file is read whole,
    in the web request too."""
    raw = _read_bounded(source)
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8-sig")
        except UnicodeDecodeError as error:
            raise PlanFileError([f"the file is not UTF-8 text (byte {error.start})"]) from None
    raw = raw.removeprefix("\ufeff")
    _check_depth(raw)
    try:
        data = json.loads(
            raw, parse_constant=_reject_constant, parse_int=_parse_int, parse_float=_parse_float
        )
    except json.JSONDecodeError as error:
        raise PlanFileError(
            [f"invalid JSON at line {error.lineno}, column {error.colno}: {error.msg}"]
        ) from None
    except _NotJSON as error:
        raise PlanFileError([f"invalid JSON: {error}"]) from None
    except _TooLong as error:
        raise PlanFileError([str(error)]) from None
    except RecursionError:  # only with PLANFILE_MAX_DEPTH set beyond what Python can nest
        raise PlanFileError(["This plan file nests lists and objects too deep to read."]) from None
    if not isinstance(data, dict):
        raise PlanFileError([f"the top level must be an object {{…}}, not {_kind(data)}"])
    return data


def _read_bounded(source: str | bytes | Path | IO[Any]) -> str | bytes:
    """The file's content, never more than PLANFILE_MAX_BYTES of it read into memory."""
    limit = settings.PLANFILE_MAX_BYTES
    if isinstance(source, bytes):
        check_plan_file_size(len(source))
        return source
    if isinstance(source, str) and not _is_file(source):
        # Text is never shorter in UTF-8 than in characters: the cheap test first.
        check_plan_file_size(len(source) if len(source) > limit else len(source.encode()))
        return source
    if isinstance(source, str | Path):
        path = Path(source)
        try:
            check_plan_file_size(path.stat().st_size)
            with path.open("rb") as file:
                content: str | bytes = file.read(limit + 1)
        except OSError as error:
            raise PlanFileError([f"cannot read {source}: {error.strerror}"]) from None
    else:
        content = source.read(limit + 1)
    if len(content) > limit:  # a file that grew, a pipe, standard input
        raise PlanFileError(
            [f"This plan file is more than {_amount(limit)}; at most {_amount(limit)} are allowed."]
        )
    if isinstance(content, str):  # a text stream reads characters; the limit counts bytes
        check_plan_file_size(len(content.encode()))
    return content


def check_plan_file_size(size: int) -> None:
    """Refuse a plan file of more than PLANFILE_MAX_BYTES, naming both sizes."""
    limit = settings.PLANFILE_MAX_BYTES
    if size > limit:
        raise PlanFileError(
            [f"This plan file is {_amount(size, up=True)}; at most {_amount(limit)} are allowed."]
        )


def _amount(size: int, *, up: bool = False) -> str:
    """A size in words; a file's size is rounded up, so that one byte too many never reads as
    the limit itself."""
    if size < 1024:
        return f"{size:,} bytes"
    unit, name = (1024, "KB") if size < 1024**2 else (1024**2, "MB")
    tenths = (math.ceil if up else math.floor)(size * 10 / unit) / 10
    return f"{tenths:,.1f}".removesuffix(".0") + f" {name}"


# A JSON string, quotes and escapes included: what the depth count skips.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_DEPTH_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def _check_depth(text: str) -> None:
    """Refuse nesting deeper than PLANFILE_MAX_DEPTH before parsing: Python's parser recurses
    once per level and fails past about a thousand. A plan file needs 7 levels."""
    limit = settings.PLANFILE_MAX_DEPTH
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    if len(brackets) <= limit:
        return
    depth = max(itertools.accumulate(map(_DEPTH_STEP.__getitem__, brackets)))
    if depth > limit:
        raise PlanFileError(
            [
                f"This plan file nests lists and objects {depth:,} levels deep; "
                f"at most {limit:,} levels are allowed."
            ]
        )


def _is_file(value: str) -> bool:
    # Text with a brace or a line break is JSON, not a file name (and may be too long for one).
    if "\n" in value or "{" in value or len(value) > 4096:
        return False
    return Path(value).is_file()


class _NotJSON(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    # Python's json accepts NaN and Infinity, which JSON itself does not.
    raise _NotJSON(f"{name} is not a JSON value")


class _TooLong(ValueError):
    pass


# Far more than any number a plan holds (an amount, a threshold, a day count); Python itself
# refuses to read whole numbers of more than 4,300 digits, with an error instead of a message.
MAX_NUMBER_CHARS = 100


def _check_number(text: str) -> None:
    if len(text) > MAX_NUMBER_CHARS:
        raise _TooLong(
            f"The number {text[:20]}… in this plan file is {len(text):,} characters long; "
            f"at most {MAX_NUMBER_CHARS} are allowed."
        )


def _parse_int(text: str) -> int:
    _check_number(text)
    return int(text)


def _parse_float(text: str) -> float:
    _check_number(text)
    value = float(text)
    if not math.isfinite(value):  # 1e999: a float cannot hold it
        raise _TooLong(f"The number {text} in this plan file is too large.")
    return value


def _kind(value: Any) -> str:
    """A JSON value's type, in words."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | Decimal):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the string {_quoted(value)}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


@dataclass
class MetricTestSpec:
    metric: str
    params: dict[str, Any]
    comparator: str
    threshold: float
    threshold_high: float | None
    min_sample: int
    segment: str
    channel: str
    window_days: int | None


@dataclass
class AssumptionSpec:
    statement: str
    importance: int
    evidence: int
    owner: str | None
    test: MetricTestSpec | None


@dataclass
class ChoiceSpec:
    title: str
    stages: list[str]
    status: str
    horizon: str
    owner: str | None
    business_unit: str
    rationale: str
    assumptions: list[AssumptionSpec]


@dataclass
class InitiativeSpec:
    title: str
    stages: list[str]
    choices: list[str]
    cost_estimate: Decimal | None
    status: str


@dataclass
class MemberSpec:
    username: str
    role: str
    business_unit: str
    path: str


@dataclass
class PlanSpec:
    name: str = ""
    slug: str = ""
    description: str = ""
    stages: list[str] = field(default_factory=list)
    event_map: dict[str, str] = field(default_factory=dict)
    members: list[MemberSpec] = field(default_factory=list)
    cadence: str = Cadence.OFF
    weekday: int = 0
    time: dt.time = dt.time(7, 0)
    timezone: str = "UTC"
    choices: list[ChoiceSpec] = field(default_factory=list)
    initiatives: list[InitiativeSpec] = field(default_factory=list)


class _Object:
    """One JSON object of the file at `path`; its readers record errors instead of raising."""

    def __init__(self, data: Any, path: str, keys: tuple[str, ...], errors: list[str]) -> None:
        self.path, self.errors = path, errors
        self.data: dict[str, Any] = data if isinstance(data, dict) else {}
        if not isinstance(data, dict):
            self.error("", f"must be an object {{…}}, not {_kind(data)}")
        where = path or "the top level"
        for key in self.data:
            if key not in keys:
                errors.append(
                    f'unknown key "{key}" at {where}; the keys there are {", ".join(keys)}'
                )

    def at(self, key: str | int) -> str:
        if isinstance(key, int):
            return f"{self.path}[{key}]"
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: str, message: str) -> None:
        self.errors.append(f"{self.at(key) if key else self.path}: {message}")

    def get(self, key: str) -> Any:
        """The value, or None when the key is omitted or null: both mean “the default”."""
        return self.data.get(key)

    def text(
        self,
        key: str,
        *,
        max_length: int | None = None,
        required: bool = False,
        one_line: bool = False,
    ) -> str:
        value = self.get(key)
        if value is None:
            if required:
                self.error(key, "is missing")
            return ""
        checked = _check_text(value, self.at(key), self.errors, max_length, required)
        if checked and one_line and (problem := one_line_problem(checked)):
            self.error(key, problem)
            return ""
        return checked or ""

    def enum(self, key: str, values: list[str], noun: str, default: str) -> str:
        value = self.get(key)
        if value is None:
            return default
        if value not in values:
            self.error(key, f"{_quoted(value)} is not a {noun}; choose one of {', '.join(values)}")
            return default
        return value

    def integer(self, key: str, *, low: int, high: int, default: int | None) -> int | None:
        value = self.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            span = f"from {low} to {high}" if high < MAX_INT else f"at least {low}"
            self.error(key, f"must be a whole number {span}, not {_kind(value)}")
            return default
        return value

    def items(self, key: str, keys: tuple[str, ...]) -> list[_Object]:
        """The objects of a list value, each at its own position; other values are errors."""
        objects = []
        for path, value in self.values(key):
            if isinstance(value, dict):
                objects.append(_Object(value, path, keys, self.errors))
            else:
                self.errors.append(f"{path}: must be an object {{…}}, not {_kind(value)}")
        return objects

    def values(self, key: str) -> list[tuple[str, Any]]:
        value = self.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.error(key, f"must be a list […], not {_kind(value)}")
            return []
        return [(f"{self.at(key)}[{index}]", item) for index, item in enumerate(value)]


def _quoted(value: Any) -> str:
    if not isinstance(value, str):
        return _kind(value)
    # Echo enough of a long value to recognise it, not a whole paragraph.
    return f'"{value[:60]}…"' if len(value) > 60 else f'"{value}"'


def _check_text(
    value: Any, path: str, errors: list[str], max_length: int | None, required: bool = True
) -> str | None:
    if not isinstance(value, str):
        errors.append(f"{path}: must be a string, not {_kind(value)}")
        return None
    if required and not value.strip():
        errors.append(f"{path}: must not be blank")
        return None
    if max_length is not None and len(value) > max_length:
        errors.append(f"{path}: is {len(value)} characters long; at most {max_length} fit")
        return None
    return value


def _unique(value: str, key: str, path: str, seen: dict[str, str], errors: list[str]) -> bool:
    """Record `value` under `key`; an error naming the first one when it is already there."""
    if key in seen:
        errors.append(f'{path}: "{value}" is already at {seen[key]}; each must be unique')
        return False
    seen[key] = path
    return True


def _read_plan(data: Any, errors: list[str]) -> PlanSpec:
    top = _Object(data, "", PLAN_KEYS, errors)
    spec = PlanSpec(
        name=top.text("name", max_length=200, required=True, one_line=True),
        slug=top.text("slug", max_length=80, required=True),
        description=top.text("description"),
    )
    if spec.slug and not re.fullmatch(r"[-a-zA-Z0-9_]+", spec.slug):
        top.error("slug", f'"{spec.slug}" is not a slug; use letters, digits, - and _')
    spec.stages = _read_stages(top)
    stages = {name.lower(): name for name in spec.stages}
    spec.event_map = _read_event_map(top, stages)
    spec.members = _read_members(top)
    _read_schedule(top, spec)
    members = {member.username for member in spec.members}
    spec.choices = [
        _read_choice(item, stages, members) for item in top.items("choices", CHOICE_KEYS)
    ]
    _check_unique_titles(spec.choices, top.at("choices"), errors)
    # Titles as written, so that one bad choice does not also fail every initiative naming it.
    titles = _titles_written(top.get("choices"))
    spec.initiatives = [
        _read_initiative(item, stages, titles)
        for item in top.items("bt_initiatives", INITIATIVE_KEYS)
    ]
    _check_unique_titles(spec.initiatives, top.at("bt_initiatives"), errors)
    return spec


def _titles_written(choices: Any) -> set[str]:
    if not isinstance(choices, list):
        return set()
    items = [item for item in choices if isinstance(item, dict)]
    return {item["title"] for item in items if isinstance(item.get("title"), str)}


def _check_unique_titles(
    items: Sequence[ChoiceSpec | InitiativeSpec], path: str, errors: list[str]
) -> None:
    seen: dict[str, str] = {}
    for index, item in enumerate(items):
        if item.title:
            _unique(item.title, item.title, f"{path}[{index}].title", seen, errors)


def _read_stages(top: _Object) -> list[str]:
    if top.get("stages") is None:
        return list(DEFAULT_STAGES)
    names: list[str] = []
    seen: dict[str, str] = {}
    for path, value in top.values("stages"):
        name = _check_text(value, path, top.errors, max_length=80)
        # Stage names are unique whatever their case (the database says so too).
        if name and _unique(name, name.lower(), path, seen, top.errors):
            names.append(name)
    return names


def _stage_name(value: Any, path: str, stages: dict[str, str], errors: list[str]) -> str | None:
    """The stage the value names, matched like the plan matches them: whatever the case."""
    if not isinstance(value, str) or value.lower() not in stages:
        known = ", ".join(stages.values()) or "none"
        errors.append(f"{path}: {_quoted(value)} is not a stage of this plan ({known})")
        return None
    return stages[value.lower()]


def _stage_list(obj: _Object, stages: dict[str, str]) -> list[str]:
    names: list[str] = []
    seen: dict[str, str] = {}
    for path, value in obj.values("stages"):
        name = _stage_name(value, path, stages, obj.errors)
        if name and _unique(name, name, path, seen, obj.errors):
            names.append(name)
    return names


def _read_event_map(top: _Object, stages: dict[str, str]) -> dict[str, str]:
    raw = top.get("event_map")
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        top.error("event_map", f"must be an object of event types and stages, not {_kind(raw)}")
        return {}
    event_map: dict[str, str] = {}
    seen: dict[str, str] = {}
    for event_type, value in raw.items():
        path = top.at(f"event_map.{event_type}")
        # Event types are stored lower-case (DOMAIN §4): "Visit" and "visit" are one type.
        key = str(event_type).strip().lower()
        if not key or len(key) > 100:
            top.errors.append(f"{path}: an event type has 1 to 100 characters")
            continue
        stage = _stage_name(value, path, stages, top.errors)
        if _unique(event_type, key, path, seen, top.errors) and stage:
            event_map[key] = stage
    return event_map


def _read_members(top: _Object) -> list[MemberSpec]:
    members: list[MemberSpec] = []
    seen: dict[str, str] = {}
    for item in top.items("members", MEMBER_KEYS):
        username = item.text("username", max_length=150, required=True)
        role = item.enum("role", Role.values, "role", "")
        if item.get("role") is None:
            item.error("role", f"is missing; choose one of {', '.join(Role.values)}")
        business_unit = item.text("business_unit", max_length=100)
        if role == Role.BU_LEADER and not business_unit.strip():
            item.error("business_unit", "a BU leader names the business unit they speak for")
        if username and _unique(username, username, item.path, seen, item.errors):
            members.append(MemberSpec(username, role, business_unit, item.path))
    return members


def _read_schedule(top: _Object, spec: PlanSpec) -> None:
    if top.get("retest_schedule") is None:
        return
    schedule = _Object(top.get("retest_schedule"), "retest_schedule", SCHEDULE_KEYS, top.errors)
    spec.cadence = schedule.enum("cadence", Cadence.values, "cadence", Cadence.OFF)
    spec.weekday = WEEKDAYS.index(schedule.enum("weekday", WEEKDAYS, "weekday", "mon"))
    time = schedule.text("time")
    match = TIME_RE.match(time) if time else None
    if time and not match:
        schedule.error("time", f'"{time}" is not a time of day such as "07:00"')
    elif match:
        hour, minute, second = match.groups()
        spec.time = dt.time(int(hour), int(minute), int(second or 0))
    timezone = schedule.text("timezone", max_length=64)
    if timezone:
        try:
            validate_timezone(timezone)
        except ValidationError as error:
            schedule.error("timezone", error.messages[0])
        else:
            spec.timezone = timezone


def _owner(obj: _Object, members: set[str]) -> str | None:
    owner = obj.get("owner")
    if owner is None:
        return None
    if not isinstance(owner, str) or owner not in members:
        obj.error("owner", f"{_quoted(owner)} is not a member of the plan in this file")
        return None
    return owner


def _read_choice(obj: _Object, stages: dict[str, str], members: set[str]) -> ChoiceSpec:
    choice = ChoiceSpec(
        title=obj.text("title", max_length=200, required=True, one_line=True),
        stages=_stage_list(obj, stages),
        status=obj.enum("status", ChoiceStatus.values, "status", ChoiceStatus.PROPOSED),
        horizon=obj.enum("horizon", Horizon.values, "horizon", Horizon.NOW),
        owner=_owner(obj, members),
        business_unit=obj.text("business_unit", max_length=100),
        rationale=obj.text("rationale"),
        assumptions=[],
    )
    seen: dict[str, str] = {}
    for item in obj.items("assumptions", ASSUMPTION_KEYS):
        assumption = _read_assumption(item, stages, members)
        if assumption.statement and _unique(
            assumption.statement, assumption.statement, item.at("statement"), seen, obj.errors
        ):
            choice.assumptions.append(assumption)
    return choice


def _read_assumption(obj: _Object, stages: dict[str, str], members: set[str]) -> AssumptionSpec:
    test = obj.get("test")
    return AssumptionSpec(
        statement=obj.text("statement", max_length=400, required=True),
        importance=obj.integer("importance", low=1, high=5, default=3) or 3,
        evidence=obj.integer("evidence", low=1, high=5, default=1) or 1,
        owner=_owner(obj, members),
        # No test (omitted or null): the assumption is tracked by hand.
        test=None
        if test is None
        else _read_test(_Object(test, obj.at("test"), TEST_KEYS, obj.errors), stages),
    )


def _read_test(obj: _Object, stages: dict[str, str]) -> MetricTestSpec:
    """The rules of Assumption.clean(), each error at its own key."""
    metric = obj.get("metric")
    if metric is None:
        obj.error("metric", f"is missing; choose one of {', '.join(Metric.values)}")
    elif metric not in Metric.values:
        obj.error(
            "metric", f"{_quoted(metric)} is not a metric; choose one of {', '.join(Metric.values)}"
        )
    params: dict[str, Any] = {}
    if metric in Metric.values:
        try:
            params = clean_metric_params(metric, obj.get("params"), list(stages.values()))
        except ValidationError as error:
            obj.error("params", error.messages[0])
    comparator = obj.get("comparator")
    if comparator is None:
        obj.error("comparator", f"is missing; choose one of {', '.join(Comparator.values)}")
    else:
        comparator = obj.enum("comparator", Comparator.values, "comparator", "")
    low, high = _read_threshold(obj, comparator)
    return MetricTestSpec(
        metric=metric if isinstance(metric, str) else "",
        params=params,
        comparator=comparator or "",
        threshold=low if low is not None else 0.0,
        threshold_high=high,
        min_sample=obj.integer("min_sample", low=1, high=MAX_INT, default=30) or 30,
        segment=obj.text("segment", max_length=100),
        channel=obj.text("channel", max_length=100),
        window_days=obj.integer("window_days", low=1, high=MAX_INT, default=None),
    )


def _read_threshold(obj: _Object, comparator: str | None) -> tuple[float | None, float | None]:
    value = obj.get("threshold")
    if not comparator:
        return None, None
    if comparator == Comparator.BETWEEN:
        if not (isinstance(value, list) and len(value) == 2 and all(map(_is_number, value))):
            obj.error("threshold", f'"between" takes [low, high], two numbers, not {_kind(value)}')
            return None, None
        low, high = float(value[0]), float(value[1])
        if low > high:
            obj.error("threshold", f"the high threshold {value[1]} is below the low one {value[0]}")
        return low, high
    if not _is_number(value):
        obj.error("threshold", f'"{comparator}" takes one number, not {_kind(value)}')
        return None, None
    return float(value), None


def _is_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value)


def _read_initiative(obj: _Object, stages: dict[str, str], titles: set[str]) -> InitiativeSpec:
    choices: list[str] = []
    seen: dict[str, str] = {}
    for path, title in obj.values("choices"):
        if not isinstance(title, str) or title not in titles:
            obj.errors.append(f"{path}: {_quoted(title)} is not the title of a choice in this file")
        elif _unique(title, title, path, seen, obj.errors):
            choices.append(title)
    return InitiativeSpec(
        title=obj.text("title", max_length=200, required=True, one_line=True),
        stages=_stage_list(obj, stages),
        choices=choices,
        cost_estimate=_read_cost(obj),
        status=obj.enum("status", InitiativeStatus.values, "status", InitiativeStatus.PROPOSED),
    )


def _read_cost(obj: _Object) -> Decimal | None:
    value = obj.get("cost_estimate")
    if value is None:
        return None
    try:
        cost = Decimal(str(value)) if _is_number(value) else None
    except InvalidOperation:
        cost = None
    if cost is None or cost < 0 or cost >= MAX_COST or cost != round(cost, 2):
        obj.error(
            "cost_estimate", f"must be an amount ≥ 0 with at most 2 decimals, not {_kind(value)}"
        )
        return None
    return cost


def _find_users(members: list[MemberSpec], errors: list[str]) -> dict[str, Any]:
    """The members' users by username, in one query; an error for each one that does not exist."""
    user_model = get_user_model()
    lookup = {f"{user_model.USERNAME_FIELD}__in": [member.username for member in members]}
    users = {user.get_username(): user for user in user_model._default_manager.filter(**lookup)}
    for member in members:
        if member.username not in users:
            errors.append(f'{member.path}: no user "{member.username}"')
    return users


def _count(value: Any) -> int:
    return len(value) if isinstance(value, list | dict) else 0


def _check_counts(data: dict[str, Any]) -> None:
    """Refuse a plan larger than the limits before reading it item by item: thousands of
    choices would each be checked, written and then drawn on one board."""
    written = data.get("choices")
    choices: list[Any] = written if isinstance(written, list) else []
    assumptions = sum(_count(c.get("assumptions")) for c in choices if isinstance(c, dict))
    counts = [
        ("stages", _count(data.get("stages")), settings.PLANFILE_MAX_STAGES),
        ("event types", _count(data.get("event_map")), settings.PLANFILE_MAX_EVENT_TYPES),
        ("members", _count(data.get("members")), settings.PLANFILE_MAX_MEMBERS),
        ("choices", len(choices), settings.PLANFILE_MAX_CHOICES),
        ("assumptions", assumptions, settings.PLANFILE_MAX_ASSUMPTIONS),
        ("BT initiatives", _count(data.get("bt_initiatives")), settings.PLANFILE_MAX_INITIATIVES),
    ]
    errors = [
        f"This plan file has {count:,} {noun}; at most {limit:,} are allowed."
        for noun, count, limit in counts
        if count > limit
    ]
    if errors:
        raise PlanFileError(errors)


NUL_REFUSED = "holds a character we cannot store (a NUL byte, written \\u0000)"


def _nul_errors(value: Any, path: str) -> list[str]:
    """Where the file holds a NUL character: PostgreSQL text cannot store one, and the file's
    JSON can carry it anywhere, as \\u0000."""
    if isinstance(value, str):
        return [f"{path}: {NUL_REFUSED}"] if "\x00" in value else []
    if isinstance(value, list):
        return [e for i, item in enumerate(value) for e in _nul_errors(item, f"{path}[{i}]")]
    if not isinstance(value, dict):
        return []
    errors: list[str] = []
    for key, item in value.items():
        where = f"{path}.{key}" if path else str(key)
        if "\x00" in str(key):
            shown = where.replace("\x00", "\\u0000")
            errors.append(f"{shown}: {NUL_REFUSED}")
        else:
            errors += _nul_errors(item, where)
    return errors


def read_plan(data: Any) -> tuple[PlanSpec, dict[str, Any]]:
    """The file checked completely, with the members' users; PlanFileError lists every problem."""
    errors: list[str] = []
    if not isinstance(data, dict):
        raise PlanFileError([f"the top level must be an object {{…}}, not {_kind(data)}"])
    _check_counts(data)
    if nul := _nul_errors(data, ""):
        raise PlanFileError(nul)
    spec = _read_plan(data, errors)
    users = _find_users(spec.members, errors)
    if errors:
        raise PlanFileError(errors)
    return spec, users
