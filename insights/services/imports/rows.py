"""The row rules of DOMAIN §4, one table: each event field's rule, written once, turns the field's
value into the text the import stores, or raises `Invalid` with the reason in words.

`Columns` applies the table to a file's rows: `parse`, the fast path, stops at the first refusal;
`errors` runs the same rules over a refused row to gather every reason. Both call the same
functions, so a row is never refused without a reason, nor given one it does not deserve. A row
that passes is stored with its identity (`models.identity_digest`, the one definition).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from json.encoder import encode_basestring  # type: ignore[attr-defined]

from django.db import models

from ...models import EVENT_FIELDS, Event, identity_digest
from .csvfiles import FileRejected, RowError
from .dates import DateHint, parse_occurred_at


class Invalid(ValueError):
    """A value the import does not store; the message is the reason, in words."""


# A field's rule: its value as read (spaces and all) → the text stored, or Invalid.
Rule = Callable[[str], str]

# The fields every row needs a value for; a file needs a column for each.
REQUIRED_FIELDS = ["customer_id", "occurred_at", "event_type"]
# What the sinks store of a row, in this order: the fields, then the attributes as JSON text and
# the identity as hex.
STORED = (*EVENT_FIELDS, "attributes", "dedupe_key")
NO_ATTRIBUTES = "{}"

EMPTY = "is empty"
NUMBER_REASON = "is not a number; use digits and a dot for decimals, such as 1234.50"
VALUE_MAX_INTEGER_DIGITS = 14
VALUE_MAX_DECIMALS = 6
VALUE_QUANTUM = Decimal(1).scaleb(-VALUE_MAX_DECIMALS)
# Text that PostgreSQL reads as the same instant and number as Python does is passed on as it is
# (it takes zone offsets up to ±15:59 only); anything else is written out again, in UTC.
PLAIN_MOMENT = re.compile(
    r"\d{4}-\d\d-\d\d(?:[T ]\d\d:\d\d(?::\d\d(?:\.\d{1,6})?)?(?:Z|[+-](?:0\d|1[0-5]):\d\d)?)?",
    re.ASCII,
).fullmatch
PLAIN_NUMBER = re.compile(
    rf"[+-]?\d{{1,{VALUE_MAX_INTEGER_DIGITS}}}(?:\.\d{{1,{VALUE_MAX_DECIMALS}}})?", re.ASCII
).fullmatch


def text(limit: int, *, required: bool = False, lower: bool = False) -> Rule:
    """Text of at most `limit` characters, without the spaces around it (lower-case if `lower`);
    "" is none, which only an optional field may be."""
    too_long = f"is longer than {limit} characters"

    def rule(value: str) -> str:
        value = value.strip()
        if len(value) > limit:
            raise Invalid(too_long)
        if required and not value:
            raise Invalid(EMPTY)
        return value.lower() if lower else value

    return rule


def moment(hint: DateHint) -> Rule:
    """An ISO 8601 date or date-time (`dates.parse_occurred_at`), stored as written when
    PostgreSQL reads it as the same instant, else in UTC. A date written another common way is
    refused with the ISO form to write instead, which `hint` works out (it learns from the file
    which order its ambiguous dates write the day and month in)."""

    def rule(value: str) -> str:
        value = value.strip()
        if not value:
            raise Invalid(EMPTY)
        try:
            read = parse_occurred_at(value)
        except ValueError:
            raise Invalid(hint.reason(value)) from None
        return value if PLAIN_MOMENT(value) else read.astimezone(dt.UTC).isoformat()

    return rule


def number(value: str) -> str:
    """A decimal number, stored exactly: at most 14 digits before the point and 6 after it (more
    only when they are zeros); "" is none."""
    value = value.strip()
    if not value or PLAIN_NUMBER(value):
        return value
    try:
        read = Decimal(value)
    except InvalidOperation:
        raise Invalid(NUMBER_REASON) from None
    if not read.is_finite():
        raise Invalid(NUMBER_REASON)
    # Size first: quantizing a huge number would overflow the context and read as "not a number".
    if read.adjusted() >= VALUE_MAX_INTEGER_DIGITS:
        raise Invalid("is too large")
    exponent = read.as_tuple().exponent
    assert isinstance(exponent, int)
    if -exponent > VALUE_MAX_DECIMALS and read != read.quantize(VALUE_QUANTUM):
        raise Invalid(f"has more than {VALUE_MAX_DECIMALS} decimal places")
    return str(read)


def _length(field: str) -> int:
    """The longest text the events table takes in the field's column."""
    column = Event._meta.get_field(field)
    assert isinstance(column, models.CharField) and column.max_length is not None
    return column.max_length


def field_rules() -> dict[str, Rule]:
    """Each event field's rule, in DOMAIN §4's order, for one file (the date rule learns from
    it). Text is as long as the events table takes; event types are stored lower-case."""
    return {
        "customer_id": text(_length("customer_id"), required=True),
        "occurred_at": moment(DateHint()),
        "event_type": text(_length("event_type"), required=True, lower=True),
        "value": number,
        "segment": text(_length("segment")),
        "channel": text(_length("channel")),
        "event_id": text(_length("event_id")),
    }


def check_mapping(header: list[str], mapping: dict[str, str]) -> None:
    """Raise FileRejected unless every required field has exactly one column."""
    counts = Counter(h.lower() for h in header if h)
    duplicates = sorted({h for h in header if h and counts[h.lower()] > 1})
    if duplicates:
        raise FileRejected(f"The header names the column {', '.join(duplicates)} more than once.")
    for source, target in mapping.items():
        if source not in header:
            raise FileRejected(
                f"There is no column “{source}” to map onto {target} "
                f"(the columns are: {', '.join(header)})."
            )
        if target not in EVENT_FIELDS:
            raise FileRejected(
                f"“{target}” is not an event field; map columns onto {', '.join(EVENT_FIELDS)}."
            )
    missing = [f for f in REQUIRED_FIELDS if f not in mapping.values()]
    if missing:
        raise FileRejected(
            f"The file has no {' and no '.join(missing)} column (the columns are: "
            f"{', '.join(header)}). Rename a column or map one onto it."
        )


class Columns:
    """A file's columns: where each event field sits in a row, which columns are kept as
    attributes, and how a row becomes what the sinks store (`parse`) or its errors (`errors`)."""

    def __init__(self, header: list[str], mapping: dict[str, str]) -> None:
        self.header = header
        self.width = len(header)
        self.mapping = mapping
        self.field_index = {t: header.index(s) for s, t in mapping.items()}
        self.field_source = {t: s for s, t in mapping.items()}
        self.attributes = [(i, h) for i, h in enumerate(header) if h not in mapping and h]
        self.unnamed = [i for i, h in enumerate(header) if not h]
        self.rules = field_rules()
        # (field, its column, its rule) for each field the file has, in the table's order.
        self.checks = [
            (name, self.field_index[name], rule)
            for name, rule in self.rules.items()
            if name in self.field_index
        ]
        # For `parse` to unpack: the required fields' columns (check_mapping made sure they have
        # one), the other fields' (None when the file has none), every field's rule.
        self.required_columns = tuple(self.field_index[name] for name in REQUIRED_FIELDS)
        self.optional_columns = tuple(
            self.field_index.get(name) for name in EVENT_FIELDS if name not in REQUIRED_FIELDS
        )
        self.rule_list = tuple(self.rules[name] for name in EVENT_FIELDS)
        # The identity's content as json.dumps(sort_keys=True, ensure_ascii=False) writes it,
        # assembled from keys encoded once (Event.identity writes it with json; a test pins them).
        keys = [(t, i, True) for t, i in self.field_index.items()]
        keys += [(f"attr:{h}", i, False) for i, h in self.attributes]
        self.content_keys = [(encode_basestring(k) + ": ", i, s) for k, i, s in sorted(keys)]
        self.attribute_keys = [(encode_basestring(h) + ": ", i) for i, h in self.attributes]
        self.seen: dict[bytes, int] = {}

    def parse(self, values: list[str]) -> tuple[str, ...] | None:
        """The row as the sinks store it (STORED, all text: "" is none), or None when a rule
        refuses one of its values (`errors` then says which and why). The hot path: the rules
        are called one by one, not in a loop."""
        if len(values) != self.width:
            return None
        at_customer, at_moment, at_type = self.required_columns
        at_value, at_segment, at_channel, at_event = self.optional_columns
        customer_id, occurred_at, event_type, value, segment, channel, event_id = self.rule_list
        try:
            stored_id = "" if at_event is None else event_id(values[at_event])
            extra = self._unnamed(values) if self.unnamed else None
            return (
                customer_id(values[at_customer]),
                occurred_at(values[at_moment]),
                event_type(values[at_type]),
                "" if at_value is None else value(values[at_value]),
                "" if at_segment is None else segment(values[at_segment]),
                "" if at_channel is None else channel(values[at_channel]),
                stored_id,
                self._attributes(values, extra),
                self.key(values, stored_id, extra),
            )
        except Invalid:
            return None

    def _attributes(self, values: list[str], extra: dict[str, str] | None) -> str:
        """The other columns' values, as read, as JSON text."""
        if extra:
            named = {h: values[i] for i, h in self.attributes}
            return json.dumps({**named, **extra}, ensure_ascii=False)
        if self.attribute_keys:
            pairs = [k + encode_basestring(values[i]) for k, i in self.attribute_keys]
            return "{" + ", ".join(pairs) + "}"
        return NO_ATTRIBUTES

    def _unnamed(self, values: list[str]) -> dict[str, str]:
        """Values under a column with no name (a trailing delimiter on every line), if any."""
        return {f"column {i + 1}": values[i] for i in self.unnamed if values[i]}

    def key(self, values: list[str], event_id: str, extra: dict[str, str] | None) -> str:
        """The row's identity as hex: by event_id, else by its content and how many identical
        rows came before it in this file."""
        if event_id:
            return identity_digest(event_id, b"", 0).hex()
        if extra:
            content = {t: values[i].strip() for t, i in self.field_index.items()}
            content.update({f"attr:{h}": values[i] for i, h in self.attributes})
            content.update({f"attr:{h}": v for h, v in extra.items()})
            text = json.dumps(content, sort_keys=True, ensure_ascii=False)
        else:
            pairs = [
                k + encode_basestring(values[i].strip() if mapped else values[i])
                for k, i, mapped in self.content_keys
            ]
            text = "{" + ", ".join(pairs) + "}"
        data = text.encode()
        # 8 bytes of the content's own hash count the occurrences: small enough for millions.
        digest = hashlib.blake2b(data, digest_size=8).digest()
        occurrence = self.seen.get(digest, 0)
        self.seen[digest] = occurrence + 1
        return identity_digest(None, data, occurrence).hex()

    def errors(self, values: list[str], line: int) -> list[RowError]:
        """Everything wrong with a row's values, field by field in the table's order."""
        if len(values) != self.width:
            reason = (
                f"{len(values)} value{'s' if len(values) != 1 else ''} where the header has "
                f"{self.width} columns"
            )
            return [RowError(line, "", "", reason)]
        errors = []
        for name, index, rule in self.checks:
            try:
                rule(values[index])
            except Invalid as invalid:
                source = self.field_source[name]
                errors.append(RowError(line, source, values[index].strip(), str(invalid)))
        return errors

    def row_errors(self, line: int, values: list[str] | None, problem: str) -> list[RowError]:
        """Why a row is rejected: what is wrong with its bytes or its CSV, then its values."""
        if values is None:
            return [RowError(line, "", "", problem)]
        errors = self.errors(values, line)
        if problem:
            errors.insert(0, self.byte_error(values, line, problem))
        return errors or [RowError(line, "", "", "the row cannot be read as an event")]

    def byte_error(self, values: list[str], line: int, problem: str) -> RowError:
        """A row with bytes that are not text: name the column they are in when it can be told."""
        for index, value in enumerate(values):
            if "\ufffd" in value:
                name = self.header[index] if index < self.width else ""
                return RowError(line, name or f"column {index + 1}", value, problem)
        return RowError(line, "", "", problem)
