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


# --- dates that are not ISO 8601: the form the file should use ----------------------------------

# 03/04/2026, 3.4.2026, 2026/4/3, each with an optional time; 3 Apr 2026, April 3, 2026.
NUMERIC_DATE = re.compile(r"(\d{1,4})([/.-])(\d{1,2})\2(\d{1,4})(?:(?:T|\s+|,\s*)(.+))?", re.ASCII)
DAY_MONTH_NAME = re.compile(
    r"(\d{1,2})(?:st|nd|rd|th)?[\s./-]*([a-z]{3,9})\.?[\s./,-]*(\d{4})(?:(?:T|\s+|,\s*)(.+))?",
    re.ASCII | re.IGNORECASE,
)
MONTH_NAME_DAY = re.compile(
    r"([a-z]{3,9})\.?[\s./-]*(\d{1,2})(?:st|nd|rd|th)?,?[\s./-]*(\d{4})(?:(?:T|\s+|,\s*)(.+))?",
    re.ASCII | re.IGNORECASE,
)
CLOCK = re.compile(
    r"(\d{1,2}):(\d{2})(?::(\d{2})(\.\d{1,6})?)?\s*([ap]\.?m\.?)?\s*(Z|[+-]\d{2}:?\d{2})?",
    re.ASCII | re.IGNORECASE,
)
MONTHS = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
]


def _month(name: str) -> int | None:
    """1–12 for an English month name or its abbreviation (Apr, Sept)."""
    name = name.lower()
    return next((i for i, m in enumerate(MONTHS, 1) if m.startswith(name) and len(name) >= 3), None)


def _day(year: int, month: int, day: int) -> str | None:
    try:
        return dt.date(year, month, day).isoformat()
    except ValueError:
        return None


def _readable(proposed: str, value: str) -> str | None:
    """The ISO text proposed for a value; None when it is the value itself (an ISO date out of
    range) or one the import would refuse too."""
    try:
        parse_occurred_at(proposed)
    except ValueError:
        return None
    return None if proposed == value else proposed


def _clock(text: str | None) -> tuple[str, str] | None:
    """A time of day as ISO writes it, and the form's name; ("", "") when there is none; None
    when what follows the date is not a time."""
    if not text:
        return "", ""
    found = CLOCK.fullmatch(text.strip())
    if not found:
        return None
    hour, minute, second, fraction, half, zone = found.groups()
    h = int(hour)
    if half:
        if not 1 <= h <= 12:
            return None
        h = h % 12 + (12 if half[0].lower() == "p" else 0)
    if h > 23 or int(minute) > 59 or (second and int(second) > 59):
        return None
    clock = f"T{h:02}:{minute}" + (f":{second}{fraction or ''}" if second else "")
    form = "THH:MM:SS" if second else "THH:MM"
    if zone and zone.upper() == "Z":
        clock, form = clock + "Z", form + "Z"
    elif zone:
        clock, form = clock + zone[:3] + ":" + zone[-2:], form + "+HH:MM"
    return clock, form


class DateHint:
    """Why a date is not one, and what to write instead: the ISO form of a date written another
    common way, when it can be told which day is meant. 03/04/2026 could be 3 April or 4 March:
    once a date of the same file tells (25/04/2026 writes the day first), that order is used;
    until then both readings are given. Dotted dates (3.4.2026) write the day first wherever
    they are used."""

    def __init__(self) -> None:
        self.day_first: bool | None = None

    def reason(self, text: str) -> str:
        value = text.strip()
        for read in (self._numeric, self._named):
            said = read(value)
            if said:
                return said
        return DATE_REASON

    def _say(self, value: str, day: str, time: tuple[str, str], note: str = "") -> str | None:
        proposed = _readable(day + time[0], value)
        if proposed is None:
            return None
        return f"{value} is not an ISO date: write {proposed} (YYYY-MM-DD{time[1]}{note})"

    def _numeric(self, value: str) -> str | None:
        found = NUMERIC_DATE.fullmatch(value)
        if not found:
            return None
        a, separator, b, c, rest = found.groups()
        time = _clock(rest)
        if time is None:
            return None
        if len(a) == 4 and len(c) <= 2:  # 2026/4/3: year, month, day
            day = _day(int(a), int(b), int(c))
            return self._say(value, day, time) if day else None
        if len(c) != 4 or len(a) > 2:
            return None  # a two-digit year: which century is not for us to guess
        day_first = _day(int(c), int(b), int(a))
        month_first = _day(int(c), int(a), int(b))
        if not (day_first and month_first) or day_first == month_first or separator == ".":
            if separator != "." and day_first != month_first:
                self.day_first = bool(day_first)  # 25/04 or 04/25: the file's order
            day = day_first or month_first
            return self._say(value, day, time) if day else None
        if self.day_first is not None:
            order = "day" if self.day_first else "month"
            day = day_first if self.day_first else month_first
            return self._say(value, day, time, f"; this file writes the {order} first")
        clock, form = time
        readings = [_readable(day + clock, value) for day in (day_first, month_first)]
        if None in readings:
            return None
        return (
            f"{value} is not an ISO date: write {readings[0]} if the day comes first, "
            f"{readings[1]} if the month does (YYYY-MM-DD{form})"
        )

    def _named(self, value: str) -> str | None:
        for pattern, day_group, month_group in ((DAY_MONTH_NAME, 1, 2), (MONTH_NAME_DAY, 2, 1)):
            found = pattern.fullmatch(value)
            if not found:
                continue
            month = _month(found.group(month_group))
            time = _clock(found.group(4))
            if month is None or time is None:
                continue
            day = _day(int(found.group(3)), month, int(found.group(day_group)))
            if day:
                return self._say(value, day, time)
        return None


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
        self.date_hint = DateHint()

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
                fail("occurred_at", self.date_hint.reason(raw["occurred_at"]))
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
