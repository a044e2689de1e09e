"""The row rules as one table (DOMAIN §4): each field's rule gives the stored text or the reason,
the fast path and the reasons never disagree, and a row's identity is the model's."""

from __future__ import annotations

import itertools
import json
import random

import pytest

from insights.models import EVENT_FIELDS, Event
from insights.services.imports.dates import DATE_REASON
from insights.services.imports.rows import (
    NUMBER_REASON,
    REQUIRED_FIELDS,
    STORED,
    Columns,
    Invalid,
    field_rules,
)

# The longest text each field takes (the events table's columns).
LIMITS = {"customer_id": 200, "event_type": 100, "segment": 100, "channel": 100, "event_id": 200}


def refusal(field: str, value: str) -> str | None:
    """The reason the field's rule gives for the value, or None when it takes it."""
    try:
        field_rules()[field](value)
    except Invalid as invalid:
        return str(invalid)
    return None


def test_one_rule_per_field_in_domain_order():
    assert list(field_rules()) == EVENT_FIELDS
    assert STORED == (*EVENT_FIELDS, "attributes", "dedupe_key")


@pytest.mark.parametrize("field", EVENT_FIELDS)
def test_only_the_required_fields_refuse_an_empty_value(field):
    if field in REQUIRED_FIELDS:
        assert refusal(field, "  ") == "is empty"
    else:
        assert field_rules()[field]("  ") == ""


@pytest.mark.parametrize(("field", "limit"), LIMITS.items())
def test_text_is_stored_trimmed_up_to_its_limit(field, limit):
    rule = field_rules()[field]
    assert rule(" " + "a" * limit + " ") == "a" * limit
    assert refusal(field, "a" * (limit + 1)) == f"is longer than {limit} characters"


def test_event_types_are_stored_lower_case():
    assert field_rules()["event_type"](" Purchase ") == "purchase"
    assert field_rules()["customer_id"]("Cust-1") == "Cust-1"


@pytest.mark.parametrize(
    ("written", "stored"),
    [
        ("2026-03-01", "2026-03-01"),
        (" 2026-03-01T14:05:00+01:00 ", "2026-03-01T14:05:00+01:00"),
        ("2026-03-01 14:05", "2026-03-01 14:05"),
        # Forms PostgreSQL would read otherwise, or not at all: the same instant, in UTC.
        ("20260301", "2026-03-01T00:00:00+00:00"),
        ("2026-03-01T14:05:00+16:00", "2026-02-28T22:05:00+00:00"),
    ],
)
def test_moments_are_stored_as_postgresql_reads_them(written, stored):
    assert field_rules()["occurred_at"](written) == stored


@pytest.mark.parametrize(
    ("written", "reason"),
    [
        ("yesterday", DATE_REASON),
        ("2026-13-01", DATE_REASON),
        ("0001-01-01T00:00:00+05:00", DATE_REASON),
        ("25/04/2026", "25/04/2026 is not an ISO date: write 2026-04-25 (YYYY-MM-DD)"),
    ],
)
def test_dates_that_are_not_say_why(written, reason):
    assert refusal("occurred_at", written) == reason


@pytest.mark.parametrize(
    ("written", "stored"),
    [("12.50", "12.50"), (" -3 ", "-3"), ("1e3", "1E+3"), ("1.50000000", "1.50000000")],
)
def test_numbers_are_stored_exactly(written, stored):
    assert field_rules()["value"](written) == stored


@pytest.mark.parametrize(
    ("written", "reason"),
    [
        ("x1", NUMBER_REASON),
        ("NaN", NUMBER_REASON),
        ("-Infinity", NUMBER_REASON),
        ("1,5", NUMBER_REASON),
        ("1e14", "is too large"),
        ("123456789012345", "is too large"),
        ("1.0000001", "has more than 6 decimal places"),
    ],
)
def test_numbers_that_are_not_say_why(written, reason):
    assert refusal("value", written) == reason


# Values for each field, some taken, some refused, for rows made of every kind of mix.
SAMPLES = {
    "customer_id": ["c1", " c2 ", "", "   ", "c" * 200, "c" * 201, 'c"é'],
    "occurred_at": [
        "2026-03-01",
        "2026-03-01T10:00:00Z",
        "",
        "yesterday",
        "03/04/2026",
        "20260301",
    ],
    "event_type": ["Visit", "", "t" * 100, "t" * 101],
    "value": ["", "5", " 5.25 ", "1e3", "x", "1e20", "0.1234567", "NaN"],
    "segment": ["", "retail", "s" * 101],
    "channel": ["", "web", "w" * 101],
    "event_id": ["", "e-1", "e" * 201],
    "note": ["", "anything at all", "=1+2"],
}


def test_the_fast_path_and_the_reasons_never_disagree():
    """`parse` refuses exactly the rows `errors` gives reasons for, and each reason is the one
    its field's rule gives for the value alone."""
    header = list(SAMPLES)
    columns = Columns(header, {name: name for name in EVENT_FIELDS})
    rows = list(itertools.product(*SAMPLES.values()))
    for values in random.Random(14).sample(rows, 5000):
        row = list(values)
        stored = columns.parse(row)
        reasons = columns.errors(row, 2)
        assert (stored is None) == bool(reasons), row
        expected = [
            (field, value.strip(), refusal(field, value))
            for field, value in zip(header, row, strict=True)
            if field in EVENT_FIELDS and refusal(field, value)
        ]
        assert [(e.column, e.value, e.reason) for e in reasons] == expected
        if stored is not None:
            rules = field_rules()
            assert stored[:7] == tuple(
                rules[f](v) for f, v in zip(header, row, strict=True) if f in rules
            )


def test_a_rows_identity_is_the_models():
    """The engine assembles the content's JSON itself (it is on the hot path): the keys are
    still Event.identity's, with attributes, unnamed columns and text JSON must escape."""
    header = ["client", "occurred_at", "event_type", "value", "Note", "", "event_id"]
    mapping = {name: name for name in header if name in EVENT_FIELDS}
    columns = Columns(header, {**mapping, "client": "customer_id"})
    rows = [
        ['c"1', "2026-03-01T10:00:00+02:00", "Visit", " 5 ", 'é \\ "q"\ttab', "", ""],
        ['c"1', "2026-03-01T10:00:00+02:00", "Visit", " 5 ", 'é \\ "q"\ttab', "", ""],
        ["c2", "2026-03-01", "visit", "", "\u2028x\U0001f600", "extra", ""],
        ["c3", "2026-03-01", "visit", "", "", "", " e-9 "],
    ]
    keys = [columns.parse(row)[-1] for row in rows]  # type: ignore[index]

    def content(row: list[str]) -> dict[str, str]:
        """DOMAIN §4: every mapped column as read (trimmed) and every other column as is."""
        mapped = {"customer_id": 0, "occurred_at": 1, "event_type": 2, "value": 3, "event_id": 6}
        found = {field: row[index].strip() for field, index in mapped.items()}
        found["attr:Note"] = row[4]
        if row[5]:
            found["attr:column 6"] = row[5]
        return found

    assert keys == [
        Event.identity(None, content(rows[0]), 0).hex,
        Event.identity(None, content(rows[0]), 1).hex,
        Event.identity(None, content(rows[2]), 0).hex,
        Event.identity("e-9", {}, 0).hex,
    ]
    assert json.loads(columns.parse(rows[2])[7]) == {  # type: ignore[index]
        "Note": "\u2028x\U0001f600",
        "column 6": "extra",
    }
