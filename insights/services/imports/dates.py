"""Dates: what the import reads as one (ISO 8601, DOMAIN §4), and for a date written another
common way, the ISO form to write instead."""

from __future__ import annotations

import datetime as dt
import re

DATE_REASON = "is not a date; use ISO 8601 such as 2026-03-01 or 2026-03-01T14:05:00+01:00"


def parse_occurred_at(text: str) -> dt.datetime:
    """ISO 8601 date (00:00 UTC that day) or date-time (no zone means UTC)."""
    moment = dt.datetime.fromisoformat(text.strip())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    if not 1 < moment.year < 9999:  # its UTC time must stay within what Python can read back
        raise ValueError("out of range")
    return moment


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
