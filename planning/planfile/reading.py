"""Reading a plan file's objects: each one is checked by the form the web app checks it with,
and each problem is said at its place in the file ("choices[3].assumptions[0].importance: …").

Lengths, ranges, choices and unique names are the models' and the forms' to say; this module
only knows the file: which keys each object has and in what order, which JSON type each key
takes, and how a form's error reads at its place in the file.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from django import forms
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from ..wording import with_article
from . import sections
from .loading import kind_of, quoted


@dataclass(frozen=True)
class Shape:
    """One kind of object in the file: its keys, in the order the file writes them (DOMAIN §6),
    and the form field behind each key where the two names differ."""

    keys: tuple[str, ...]
    fields: Mapping[str, str] = field(default_factory=dict)
    # The top level: also the keys of the sections other apps register (sections.py).
    top: bool = False

    def allowed(self) -> tuple[str, ...]:
        return (*self.keys, *sections.keys()) if self.top else self.keys

    def field(self, key: str) -> str:
        return self.fields.get(key, key)

    def plain(self, *otherwise: str) -> tuple[str, ...]:
        """The keys whose values go to the form as written: all but those the importer reads
        otherwise (names of other items, nested objects)."""
        return tuple(key for key in self.keys if key not in otherwise)


PLAN = Shape(
    (
        "name",
        "slug",
        "description",
        "stages",
        "event_map",
        "members",
        "retest_schedule",
        "choices",
        "bt_initiatives",
    ),
    top=True,
)
MEMBER = Shape(("username", "role", "business_unit"))
SCHEDULE = Shape(
    ("cadence", "weekday", "time", "timezone"),
    {
        "cadence": "retest_cadence",
        "weekday": "retest_weekday",
        "time": "retest_time",
        "timezone": "retest_timezone",
    },
)
CHOICE = Shape(
    ("title", "stages", "status", "horizon", "owner", "business_unit", "rationale", "assumptions")
)
ASSUMPTION = Shape(("statement", "importance", "evidence", "owner", "test"))
TEST = Shape(
    (
        "metric",
        "params",
        "comparator",
        "threshold",
        "min_sample",
        "segment",
        "channel",
        "window_days",
    )
)
INITIATIVE = Shape(("title", "stages", "choices", "cost_estimate", "status"))


class Errors(list[str]):
    """Every problem of a file, each said once at its place: a value the file could not give
    its form (a list where a number goes) is not judged by the form again."""

    def __init__(self) -> None:
        super().__init__()
        self.places: set[str] = set()

    def add(self, place: str, message: str) -> None:
        if place not in self.places:
            self.places.add(place)
            self.append(f"{place}: {message}" if place else message)

    def quiet(self, place: str) -> None:
        """Say nothing more about this place (a value whose meaning depends on one in error)."""
        self.places.add(place)


class Node:
    """One JSON object of the file at `path`, with the keys its shape allows."""

    def __init__(self, data: Any, path: str, shape: Shape, errors: Errors) -> None:
        self.path, self.shape, self.errors = path, shape, errors
        self.data: dict[str, Any] = data if isinstance(data, dict) else {}
        if not isinstance(data, dict):
            errors.add(path, f"must be an object {{…}}, not {kind_of(data)}")
        where = path or "the top level"
        allowed = shape.allowed()
        for key in self.data:
            if key not in allowed:
                errors.append(
                    f'unknown key "{key}" at {where}; the keys there are {", ".join(allowed)}'
                )

    def at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: str, message: str) -> None:
        self.errors.add(self.at(key), message)

    def get(self, key: str) -> Any:
        """The value, or None when the key is omitted or null: both mean “the default”."""
        return self.data.get(key)

    def values(self, key: str) -> list[tuple[str, Any]]:
        """The items of a list value, each with its place; anything but a list is an error."""
        value = self.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.error(key, f"must be a list […], not {kind_of(value)}")
            return []
        return [(f"{self.at(key)}[{index}]", item) for index, item in enumerate(value)]

    def items(self, key: str, shape: Shape) -> Iterator[Node]:
        """The objects of a list value, each at its own place."""
        for path, value in self.values(key):
            if isinstance(value, dict):
                yield Node(value, path, shape, self.errors)
            else:
                self.errors.add(path, f"must be an object {{…}}, not {kind_of(value)}")

    def text(self, key: str) -> str | None:
        """A string the file must give (a user name): None, said at its place, when it does not."""
        value = self.get(key)
        if value is None:
            self.error(key, "is missing")
        elif not isinstance(value, str):
            self.error(key, f"must be a string, not {kind_of(value)}")
        elif not value.strip():
            self.error(key, "must not be blank")
        else:
            return value
        return None


@dataclass
class Entry:
    """An object of the file on its way into its form: the form's data and, for each form
    field, its place in the file and the value written there (what messages echo)."""

    form: type[forms.ModelForm]
    model: type[models.Model]
    where: str
    data: dict[str, Any] = field(default_factory=dict)
    places: dict[str, str] = field(default_factory=dict)
    written: dict[str, Any] = field(default_factory=dict)

    def give(self, name: str, place: str, written: Any, value: Any) -> None:
        """Give the form field `name` the value, read from `written` at `place`."""
        self.data[name] = value
        self.places[name] = place
        self.written[name] = written

    def take(self, node: Node, keys: tuple[str, ...], errors: Errors) -> None:
        """Give the form the values of these keys: an omitted one is the model's default, one of
        the wrong JSON type is said at its place (and not given)."""
        for key in keys:
            name = node.shape.field(key)
            value, place = node.get(key), node.at(key)
            self.places[name], self.written[name] = place, value
            if value is None:
                self.data[name] = _model_field(self.model, name).get_default()
            elif not _fits(self.form.base_fields[name], value):
                errors.add(place, self.describe(name, value))
            elif isinstance(self.form.base_fields[name], forms.JSONField):
                self.data[name] = _as_json(value)
            else:
                self.data[name] = value

    def describe(self, name: str, value: Any) -> str:
        """What the field takes, said of a value it does not take."""
        form_field = self.form.base_fields[name]
        noun = self.places[name].rsplit(".", 1)[-1]
        if isinstance(form_field, forms.ChoiceField):
            choices = ", ".join(_choices(form_field))
            return f"{quoted(value)} is not {with_article(noun)}; choose one of {choices}"
        low, high = _bounds(form_field, _model_field(self.model, name))
        if isinstance(form_field, forms.DecimalField):
            takes = f"an amount ≥ {low or 0} with at most {form_field.decimal_places} decimals"
        elif isinstance(form_field, forms.FloatField):
            takes = "a number"
        elif isinstance(form_field, forms.IntegerField):
            takes = f"a whole number{_span(low, high, value)}"
        else:
            takes = "a string"
        return f"must be {takes}, not {kind_of(value)}"


def check(form: forms.BaseForm, entry: Entry, errors: Errors, taken: Mapping[str, str]) -> bool:
    """Whether the bound form takes the entry; if not, each of its errors is said at its place.
    `taken` names, for a field that must be unique, where the file already gave its value: a
    duplicate is refused by the form, and said with where the other one is."""
    if form.is_valid():
        return True
    problems = form.errors.as_data()
    said: set[str] = set()
    # The fields' errors first: a form-wide error that repeats one of them says nothing new.
    for name in sorted(problems, key=lambda name: name == NON_FIELD_ERRORS):
        place = entry.places.get(name, entry.where)
        for problem in problems[name]:
            for message in _in_words(entry, name, problem, taken):
                if name != NON_FIELD_ERRORS or message not in said:
                    errors.add(place, message)
                said.add(message)
    return False


def _in_words(
    entry: Entry, name: str, problem: ValidationError, taken: Mapping[str, str]
) -> list[str]:
    """A form's error as the plan file says it."""
    written = entry.written.get(name)
    form_field = entry.form.base_fields.get(name)
    code = problem.code
    if name in taken:
        return [f'"{written}" is already at {taken[name]}; each must be unique']
    if code == "required":
        if isinstance(form_field, forms.ChoiceField):
            if written is None:
                return [f"is missing; choose one of {', '.join(_choices(form_field))}"]
            return [entry.describe(name, written)]
        return ["is missing" if written is None else "must not be blank"]
    if code == "max_length" and isinstance(written, str):
        limit = (problem.params or {}).get("limit_value")
        return [f"is {len(written)} characters long; at most {limit} fit"]
    if code == "invalid_choice" or (
        isinstance(form_field, forms.IntegerField) and code in NUMBER_CODES
    ):
        return [entry.describe(name, written)]
    if code == "invalid" and isinstance(form_field, forms.TimeField):
        return [f'{quoted(written)} is not a time of day such as "07:00"']
    # A rule's own message (a clean() method's, without a code) continues the place as a clause:
    # "members[2].business_unit: a BU leader names…"; a validator's is quoted as it is.
    return [clause(m) if code is None else m for m in problem.messages]


# A number's errors (DecimalField and FloatField are IntegerFields too): each is said as what
# the field takes, with its bounds.
NUMBER_CODES = {"invalid", "min_value", "max_value"} | {
    "max_digits",
    "max_decimal_places",
    "max_whole_digits",
}


def clause(message: str) -> str:
    """“A BU leader names…” as the rest of a sentence; an acronym (“NPS…”) keeps its case."""
    return message[:1].lower() + message[1:] if not message[1:2].isupper() else message


def _model_field(model: type[models.Model], name: str) -> Any:
    return model._meta.get_field(name)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _fits(form_field: forms.Field, value: Any) -> bool:
    """Whether a JSON value has the type the form field takes."""
    if isinstance(form_field, forms.JSONField):
        return True
    if isinstance(form_field, forms.DecimalField | forms.FloatField):
        return is_number(value)
    if isinstance(form_field, forms.IntegerField):
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, str)


def _as_json(value: Any) -> str:
    # A form's JSONField reads text: the file's value goes in as its JSON, whatever its type,
    # so that the model, not the form, says what is wrong with it.
    return json.dumps(value)


def _choices(form_field: forms.ChoiceField) -> list[str]:
    choices: Any = form_field.choices  # a list by now, whatever the field was given
    return [str(value) for value, _ in choices if value != ""]


# PostgreSQL's integer: a limit this high is the column's, not a rule to tell people about.
COLUMN_LIMIT = 2**31 - 1


def _bounds(form_field: forms.Field, model_field: Any) -> tuple[Any, Any]:
    """The lowest and highest value the form and the model take (the model's validators include
    the database column's range)."""
    validators = [*form_field.validators, *model_field.validators]
    lows = [v.limit_value for v in validators if isinstance(v, MinValueValidator)]
    highs = [v.limit_value for v in validators if isinstance(v, MaxValueValidator)]
    return (max(lows) if lows else None), (min(highs) if highs else None)


def _span(low: Any, high: Any, value: Any) -> str:
    if high is not None and (high < COLUMN_LIMIT or (isinstance(value, int) and value > high)):
        return f" from {low} to {high:,}" if low is not None else f" up to {high:,}"
    return f" at least {low}" if low is not None else ""
