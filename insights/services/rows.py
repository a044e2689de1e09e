"""Checking a file's rows against DOMAIN §4: the column mapping, dates and numbers, and each row
turned into what the import stores (with its dedupe key)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections import Counter
from decimal import Decimal, InvalidOperation
from json.encoder import encode_basestring  # type: ignore[attr-defined]

from ..models import EVENT_FIELDS, identity_digest
from .csvfiles import (
    FIELD_LIMITS,
    REQUIRED_FIELDS,
    FileRejected,
    RowError,
)


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


def parse_occurred_at(text: str) -> dt.datetime:
    """ISO 8601 date (00:00 UTC that day) or date-time (no zone means UTC)."""
    moment = dt.datetime.fromisoformat(text.strip())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    if not 1 < moment.year < 9999:  # its UTC time must stay within what Python can read back
        raise ValueError("out of range")
    return moment


VALUE_MAX_INTEGER_DIGITS = 14
VALUE_MAX_DECIMALS = 6
VALUE_QUANTUM = Decimal(1).scaleb(-VALUE_MAX_DECIMALS)


def parse_value(text: str) -> Decimal:
    value = Decimal(text.strip())
    if not value.is_finite():
        raise InvalidOperation
    # Size first: quantizing a huge number would overflow the context and read as "not a number".
    if value.adjusted() >= VALUE_MAX_INTEGER_DIGITS:
        raise ValueError("is too large")
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)
    if -exponent > VALUE_MAX_DECIMALS and value != value.quantize(VALUE_QUANTUM):
        raise ValueError(f"has more than {VALUE_MAX_DECIMALS} decimal places")
    return value


# Text that PostgreSQL reads as the same instant and number as Python does is passed on as it is
# (it takes zone offsets up to ±15:59 only); anything else is written out again, in UTC.
PLAIN_MOMENT = re.compile(
    r"\d{4}-\d\d-\d\d(?:[T ]\d\d:\d\d(?::\d\d(?:\.\d{1,6})?)?(?:Z|[+-](?:0\d|1[0-5]):\d\d)?)?",
    re.ASCII,
).fullmatch
PLAIN_NUMBER = re.compile(r"[+-]?\d{1,14}(?:\.\d{1,6})?", re.ASCII).fullmatch
DATE_REASON = "is not a date; use ISO 8601 such as 2026-03-01 or 2026-03-01T14:05:00+01:00"
NUMBER_REASON = "is not a number; use digits and a dot for decimals, such as 1234.50"
NO_ATTRIBUTES = "{}"


class Columns:
    """Where each event field sits in a row, which columns are kept as attributes, and how a row
    becomes an event (`parse`, the fast path) or a list of errors (`errors`)."""

    def __init__(self, header: list[str], mapping: dict[str, str]) -> None:
        self.header = header
        self.width = len(header)
        self.mapping = mapping
        self.field_index = {t: header.index(s) for s, t in mapping.items()}
        self.field_source = {t: s for s, t in mapping.items()}
        self.attributes = [(i, h) for i, h in enumerate(header) if h not in mapping and h]
        self.unnamed = [i for i, h in enumerate(header) if not h]
        index = self.field_index.get
        # check_mapping has made sure the required fields have a column.
        self.i_customer, self.i_at, self.i_type = (self.field_index[f] for f in REQUIRED_FIELDS)
        self.i_value, self.i_segment, self.i_channel, self.i_event_id = (
            index(f) for f in ("value", "segment", "channel", "event_id")
        )
        # The identity's content as json.dumps(sort_keys=True, ensure_ascii=False) writes it,
        # assembled from pre-encoded keys (Event.identity is the reference; a test pins them).
        keys = [(t, i, True) for t, i in self.field_index.items()]
        keys += [(f"attr:{h}", i, False) for i, h in self.attributes]
        self.content_keys = [(encode_basestring(k) + ": ", i, s) for k, i, s in sorted(keys)]
        self.attribute_keys = [(encode_basestring(h) + ": ", i) for i, h in self.attributes]
        self.seen: dict[bytes, int] = {}
        self.max_customer_id, self.max_event_type, self.max_segment, self.max_channel = (
            FIELD_LIMITS[f] for f in ("customer_id", "event_type", "segment", "channel")
        )
        self.max_event_id = FIELD_LIMITS["event_id"]

    def parse(self, values: list[str]) -> tuple[str, ...] | None:
        """The row ready for storage, all text (an empty value or event_id means none), with its
        dedupe key; None if anything is wrong with it (then `errors` says what)."""
        if len(values) != self.width:
            return None
        customer_id = values[self.i_customer].strip()
        event_type = values[self.i_type].strip()
        if (
            not customer_id
            or not event_type
            or len(customer_id) > self.max_customer_id
            or len(event_type) > self.max_event_type
        ):
            return None
        occurred_at = values[self.i_at].strip()
        try:
            moment = parse_occurred_at(occurred_at)
        except ValueError:
            return None
        if not PLAIN_MOMENT(occurred_at):
            occurred_at = moment.astimezone(dt.UTC).isoformat()
        value = values[self.i_value].strip() if self.i_value is not None else ""
        if value and not PLAIN_NUMBER(value):
            try:
                value = str(parse_value(value))
            except (InvalidOperation, ValueError):
                return None
        segment = values[self.i_segment].strip() if self.i_segment is not None else ""
        channel = values[self.i_channel].strip() if self.i_channel is not None else ""
        event_id = values[self.i_event_id].strip() if self.i_event_id is not None else ""
        if (
            len(segment) > self.max_segment
            or len(channel) > self.max_channel
            or len(event_id) > self.max_event_id
        ):
            return None
        extra = self._unnamed(values) if self.unnamed else None
        if extra:
            attributes = json.dumps(
                {**{h: values[i] for i, h in self.attributes}, **extra}, ensure_ascii=False
            )
        elif self.attribute_keys:
            attributes = (
                "{"
                + ", ".join([k + encode_basestring(values[i]) for k, i in self.attribute_keys])
                + "}"
            )
        else:
            attributes = NO_ATTRIBUTES
        return (
            customer_id,
            occurred_at,
            event_type.lower(),
            value,
            segment,
            channel,
            event_id,
            attributes,
            self.key(values, event_id, extra),
        )

    def _unnamed(self, values: list[str]) -> dict[str, str]:
        """Values under a column with no name (a trailing delimiter on every line), if any."""
        return {f"column {i + 1}": values[i] for i in self.unnamed if values[i]}

    def key(self, values: list[str], event_id: str, extra: dict[str, str] | None) -> str:
        """The dedupe key, exactly Event.identity's: by event_id, else by content and how many
        identical rows came before it in this file."""
        if event_id:
            return identity_digest(("id\x1f" + event_id).encode()).hex()
        if extra:
            content = {t: values[i].strip() for t, i in self.field_index.items()}
            content.update({f"attr:{h}": values[i] for i, h in self.attributes})
            content.update({f"attr:{h}": v for h, v in extra.items()})
            text = json.dumps(content, sort_keys=True, ensure_ascii=False)
        else:
            text = (
                "{"
                + ", ".join(
                    [
                        k + encode_basestring(values[i].strip() if s else values[i])
                        for k, i, s in self.content_keys
                    ]
                )
                + "}"
            )
        data = text.encode()
        # 8 bytes of the content's own hash count the occurrences: small enough for millions.
        digest = hashlib.blake2b(data, digest_size=8).digest()
        occurrence = self.seen.get(digest, 0)
        self.seen[digest] = occurrence + 1
        return identity_digest(b"row\x1f" + data + f"\x1f{occurrence}".encode()).hex()

    def errors(self, values: list[str], line: int) -> list[RowError]:
        """Everything wrong with a row, in a stable order: empty, too long, not a date, not a
        number."""
        if len(values) != self.width:
            reason = (
                f"{len(values)} value{'s' if len(values) != 1 else ''} where the header has "
                f"{self.width} columns"
            )
            return [RowError(line, "", "", reason)]
        raw = {name: values[index].strip() for name, index in self.field_index.items()}
        errors: list[RowError] = []

        def fail(name: str, reason: str) -> None:
            errors.append(
                RowError(line, self.field_source.get(name, name), raw.get(name, ""), reason)
            )

        for name in REQUIRED_FIELDS:
            if not raw.get(name):
                fail(name, "is empty")
        for name, limit in FIELD_LIMITS.items():
            if len(raw.get(name, "")) > limit:
                fail(name, f"is longer than {limit} characters")
        if raw.get("occurred_at"):
            try:
                parse_occurred_at(raw["occurred_at"])
            except ValueError:
                fail("occurred_at", DATE_REASON)
        if raw.get("value"):
            try:
                parse_value(raw["value"])
            except InvalidOperation:
                fail("value", NUMBER_REASON)
            except ValueError as error:
                fail("value", str(error))
        return errors

    def byte_error(self, values: list[str], line: int, problem: str) -> RowError:
        """A row with bytes that are not text: name the column they are in when it can be told."""
        for index, value in enumerate(values):
            if "\ufffd" in value:
                name = self.header[index] if index < self.width else ""
                return RowError(line, name or f"column {index + 1}", value, problem)
        return RowError(line, "", "", problem)


def _row_errors(line: int, values: list[str] | None, problem: str, cols: Columns) -> list[RowError]:
    if values is None:
        return [RowError(line, "", "", problem)]
    errors = cols.errors(values, line)
    if problem:
        errors.insert(0, cols.byte_error(values, line, problem))
    return errors or [RowError(line, "", "", "the row cannot be read as an event")]
