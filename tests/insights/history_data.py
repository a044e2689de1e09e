"""Generated customer data for the assumption-history tests (DOMAIN §10), as reference rows.

Rows are `tests.insights.test_metrics.Row`s, so the plain-Python metric references written there
read them directly. The data has what the history rules have edges on: months and ISO weeks
across year ends, whole periods without any event, events exactly on the first and last moment
of periods, moments written in other time zones (whose UTC period differs from the local one),
segments and channels that change over time, decimal values with six places.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import random
from collections.abc import Iterable
from decimal import Decimal

from tests.insights.test_metrics import Row

UTC = dt.UTC
MICROSECOND = dt.timedelta(microseconds=1)
ZONES = [
    UTC,
    UTC,
    dt.timezone(dt.timedelta(hours=2)),
    dt.timezone(dt.timedelta(hours=-1)),
    dt.timezone(dt.timedelta(hours=5, minutes=30)),
]
TYPES = ["visit", "purchase", "login", "support_ticket", "survey", "signup"]
WEIGHTS = [30, 25, 14, 8, 13, 10]
SEGMENTS = ["smb", "enterprise", "consumer"]
CHANNELS = ["web", "store", "app", ""]
# The event map the stage_reach tests give their plan (stage names as create_plan makes them).
EVENT_MAP = {"visit": "Explore", "signup": "Buy", "purchase": "Buy", "login": "Use"}


# --- periods (DOMAIN §8): calendar months or ISO weeks, in UTC ---------------------------------


def period_start(at: dt.datetime, period: str) -> dt.datetime:
    """The start of the UTC month or ISO week (Monday) that holds `at`."""
    day = at.astimezone(UTC).date()
    if period == "week":
        day -= dt.timedelta(days=day.weekday())
    else:
        day = day.replace(day=1)
    return dt.datetime(day.year, day.month, day.day, tzinfo=UTC)


def next_period(start: dt.datetime, period: str) -> dt.datetime:
    if period == "week":
        return start + dt.timedelta(days=7)
    if start.month == 12:
        return start.replace(year=start.year + 1, month=1)
    return start.replace(month=start.month + 1)


def period_starts(first: dt.datetime, last: dt.datetime, period: str) -> list[dt.datetime]:
    """The starts of every period from the one holding `first` to the one holding `last`."""
    starts = [period_start(first, period)]
    while next_period(starts[-1], period) <= last:
        starts.append(next_period(starts[-1], period))
    return starts


# --- generated data ------------------------------------------------------------------------------


def _value(rnd: random.Random, kind: str) -> Decimal | None:
    if kind == "survey":
        return None if rnd.random() < 0.08 else Decimal(rnd.randint(0, 10))
    if kind == "purchase":
        if rnd.random() < 0.12:
            return None
        if rnd.random() < 0.2:
            return Decimal(rnd.randrange(1, 10**9)) / Decimal(10**6)  # six decimals
        return Decimal(rnd.randint(100, 50_000)) / 100
    return None


def _in_gaps(at: dt.datetime, gaps: Iterable[tuple[dt.datetime, dt.datetime]]) -> bool:
    return any(start <= at < end for start, end in gaps)


def generate(
    seed: int,
    start: dt.datetime,
    end: dt.datetime,
    *,
    period: str = "month",
    customers: int = 240,
    gaps: Iterable[tuple[dt.datetime, dt.datetime]] = (),
    last_zone: dt.tzinfo = UTC,
) -> list[Row]:
    """Customers acquired from `start` on, each with a run of events until `end`, none in `gaps`
    ([start, end) intervals in UTC); the plan's latest event is exactly `end`, written in
    `last_zone`. Events are also planted on the first and the last moment of every period."""
    rnd = random.Random(seed)
    gaps = list(gaps)
    span = (end - start).total_seconds()
    rows: list[Row] = []
    for number in range(customers):
        customer = f"c{number:03d}"
        at = start + dt.timedelta(seconds=rnd.uniform(0, span * 0.95))
        segment = rnd.choice(SEGMENTS)
        channel = rnd.choice(CHANNELS)
        for _ in range(rnd.randint(1, 16)):
            at = at.replace(microsecond=0 if rnd.random() < 0.5 else rnd.randrange(10**6))
            if at >= end:
                break
            kind = rnd.choices(TYPES, WEIGHTS)[0]
            if not _in_gaps(at, gaps):
                rows.append(
                    Row(
                        customer,
                        at.astimezone(rnd.choice(ZONES)),
                        kind,
                        _value(rnd, kind),
                        rnd.choice([*SEGMENTS, ""]) if rnd.random() < 0.1 else segment,
                        rnd.choice(CHANNELS) if rnd.random() < 0.3 else channel,
                    )
                )
            hours = {"minutes": 0.2, "hours": 8, "days": 5 * 24, "weeks": 35 * 24}
            gap = rnd.choice(["minutes", "hours", "days", "days", "weeks"])
            at += dt.timedelta(hours=rnd.uniform(0.001, hours[gap]))
    rows += _period_edges(rnd, start, end, period, gaps)
    rows.append(Row("last", end.astimezone(last_zone), "visit", None, "", ""))
    return rows


def _period_edges(
    rnd: random.Random,
    start: dt.datetime,
    end: dt.datetime,
    period: str,
    gaps: list[tuple[dt.datetime, dt.datetime]],
) -> list[Row]:
    """Events on the first moment of each period and on the last moment of the one before."""
    rows: list[Row] = []
    for number, first in enumerate(period_starts(start, end, period)[1:]):
        for moment, suffix in [(first - MICROSECOND, "end"), (first, "start")]:
            if moment >= end or _in_gaps(moment, gaps):
                continue
            kind = ["purchase", "survey", "signup", "visit"][number % 4]
            customer = f"edge-{number % 7}-{suffix}"
            segment = SEGMENTS[number % 3]
            rows.append(
                Row(
                    customer,
                    moment.astimezone(rnd.choice(ZONES)),
                    kind,
                    _value(rnd, kind) if kind != "survey" else Decimal(number % 11),
                    segment,
                    "web",
                )
            )
    return rows


def csv_bytes(rows: list[Row]) -> bytes:
    """The rows as an events file for the import service (DOMAIN §4)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["customer_id", "occurred_at", "event_type", "value", "segment", "channel"])
    for r in rows:
        value = "" if r.value is None else format(r.value, "f")
        writer.writerow([r.customer, r.at.isoformat(), r.type, value, r.segment, r.channel])
    return out.getvalue().encode()
