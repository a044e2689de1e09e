"""The metric engine against DOMAIN §5, on whichever database the run uses.

Every metric is checked against a plain-Python computation written here straight from the
domain's rules (nothing of the engine's is reused), first on a seeded, generated year of customer
data across many parameter combinations, then on small hand-built cases for each rule's edges.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

import pytest

from insights import metrics
from insights.metrics import Measurement, MetricError, Scope, latest_event_at, verdict
from insights.services.retests import evaluate, retest_assumption
from lifecycle.models import EventMapping, Stage
from planning.models import Assumption, AssumptionStatus, StrategicChoice
from tests.insights.events import store

pytestmark = pytest.mark.django_db

UTC = dt.UTC
PARIS_SUMMER = dt.timezone(dt.timedelta(hours=2))
AZORES = dt.timezone(dt.timedelta(hours=-1))
KOLKATA = dt.timezone(dt.timedelta(hours=5, minutes=30))
DAY = dt.timedelta(days=1)
SECOND = dt.timedelta(seconds=1)
MICROSECOND = dt.timedelta(microseconds=1)


# --- building data ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One event as the reference computation sees it."""

    customer: str
    at: dt.datetime
    type: str
    value: Decimal | None = None
    segment: str = ""
    channel: str = ""


def moment(text: str) -> dt.datetime:
    """An ISO 8601 moment; no zone means UTC (DOMAIN §4)."""
    value = dt.datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def add(plan, *specs) -> list[Row]:
    """Hand-built events: (customer, "ISO moment", type[, value[, segment[, channel]]])."""
    rows = []
    for customer, when, kind, *rest in specs:
        value = rest[0] if rest else None
        rows.append(
            Row(
                customer,
                moment(when) if isinstance(when, str) else when,
                kind,
                None if value is None else Decimal(str(value)),
                rest[1] if len(rest) > 1 else "",
                rest[2] if len(rest) > 2 else "",
            )
        )
    return store(plan, rows)


@pytest.fixture
def choice(plan):
    return StrategicChoice.objects.create(plan=plan, title="Launch a loyalty subscription")


def make_assumption(choice, metric, params, comparator=">=", threshold=0.3, **fields):
    if comparator == "between":
        threshold, fields["threshold_high"] = threshold
    return Assumption.objects.create(
        choice=choice,
        statement=fields.pop("statement", f"{metric} {comparator} {threshold}"),
        metric=metric,
        params=params,
        comparator=comparator,
        threshold=threshold,
        **fields,
    )


# --- the reference: DOMAIN §5 in plain Python ----------------------------------------------------

Z = 1.96


@dataclass(frozen=True)
class View:
    as_of: dt.datetime
    segment: str | None = None
    channel: str | None = None
    window_days: int | None = None

    def scope(self, plan) -> Scope:
        return Scope(plan.pk, self.as_of, self.segment or "", self.channel or "", self.window_days)

    def kept(self, rows: list[Row]) -> list[Row]:
        """The filters, then nothing after as_of."""
        return [
            r
            for r in rows
            if r.at <= self.as_of
            and (self.segment is None or r.segment == self.segment)
            and (self.channel is None or r.channel == self.channel)
        ]

    def in_window(self, at: dt.datetime) -> bool:
        return self.window_days is None or at > self.as_of - dt.timedelta(days=self.window_days)

    def windowed(self, rows: list[Row]) -> list[Row]:
        return [r for r in self.kept(rows) if self.in_window(r.at)]


Expected = tuple[float | None, int | None, float | None, float | None]


def utc_day(at: dt.datetime) -> dt.date:
    return at.astimezone(UTC).date()


def share(successes: int, n: int) -> Expected:
    """A proportion with its Wilson score interval, in the (k + z²/2) / (n + z²) form."""
    if n == 0:
        return (None, 0, None, None)
    p = successes / n
    centre = (successes + Z * Z / 2) / (n + Z * Z)
    spread = Z * math.sqrt(n) / (n + Z * Z) * math.sqrt(p * (1 - p) + Z * Z / (4 * n))
    return (p, n, centre - spread, centre + spread)


def ref_active(rows, view: View, event_type=None) -> Expected:
    customers = {r.customer for r in view.windowed(rows) if event_type in (None, r.type)}
    return (float(len(customers)), None, None, None)


def ref_repeat(rows, view: View, event_type, within_days) -> Expected:
    times = defaultdict(list)
    for r in view.kept(rows):
        if r.type == event_type:
            times[r.customer].append(r.at)
    mature_until = view.as_of - dt.timedelta(days=within_days)
    cohort = repeaters = 0
    for moments in times.values():
        first = min(moments)
        if not view.in_window(first) or first > mature_until:
            continue
        cohort += 1
        limit = first + within_days * dt.timedelta(hours=24)
        if any(first < t <= limit and utc_day(t) > utc_day(first) for t in moments):
            repeaters += 1
    return share(repeaters, cohort)


def ref_conversion(rows, view: View, from_event, to_event, within_days) -> Expected:
    kept = view.kept(rows)
    firsts: dict[str, dt.datetime] = {}
    for r in kept:
        if r.type == from_event and (r.customer not in firsts or r.at < firsts[r.customer]):
            firsts[r.customer] = r.at
    targets = defaultdict(list)
    for r in kept:
        if r.type == to_event:
            targets[r.customer].append(r.at)
    old_enough = view.as_of - dt.timedelta(days=within_days)
    cohort = converted = 0
    for customer, first in firsts.items():
        if not view.in_window(first) or first > old_enough:
            continue
        cohort += 1
        limit = first + within_days * dt.timedelta(hours=24)
        if any(first <= t <= limit for t in targets[customer]):
            converted += 1
    return share(converted, cohort)


def ref_churn(rows, view: View, inactive_days) -> Expected:
    cut = view.as_of - dt.timedelta(days=inactive_days)
    seen = defaultdict(list)
    for r in view.kept(rows):  # churn_rate ignores window_days
        seen[r.customer].append(r.at)
    before = [m for m in seen.values() if any(t < cut for t in m)]
    gone = [m for m in before if not any(t >= cut for t in m)]
    return share(len(gone), len(before))


def ref_stage_reach(rows, view: View, event_types: set[str]) -> Expected:
    windowed = view.windowed(rows)
    active = {r.customer for r in windowed}
    reached = {r.customer for r in windowed if r.type in event_types}
    return share(len(reached), len(active))


def ref_mean(rows, view: View, event_type) -> Expected:
    values = [
        Fraction(r.value)
        for r in view.windowed(rows)
        if r.type == event_type and r.value is not None
    ]
    n = len(values)
    if n == 0:
        return (None, 0, None, None)
    mean = sum(values) / n
    if n < 2:
        return (float(mean), 1, None, None)
    s = math.sqrt(sum((x - mean) ** 2 for x in values) / (n - 1))
    half = Z * s / math.sqrt(n)
    return (float(mean), n, float(mean) - half, float(mean) + half)


def ref_total(rows, view: View, event_type) -> Expected:
    total = sum(
        (r.value for r in view.windowed(rows) if r.type == event_type and r.value is not None),
        Decimal(0),
    )
    return (float(total), None, None, None)


def ref_nps(rows, view: View, event_type="survey") -> Expected:
    latest: dict[str, tuple[dt.datetime, int, Decimal]] = {}
    for order, r in enumerate(view.windowed(rows)):
        if r.type != event_type or r.value is None or not 0 <= r.value <= 10:
            continue
        key = (r.at, order)  # a tie on the moment: the one stored last
        if r.customer not in latest or key > latest[r.customer][:2]:
            latest[r.customer] = (r.at, order, r.value)
    scores = [score for _, _, score in latest.values()]
    n = len(scores)
    if n == 0:
        return (None, 0, None, None)
    p = sum(1 for s in scores if s >= 9) / n
    d = sum(1 for s in scores if s <= 6) / n
    value = 100 * (p - d)
    half = Z * 100 * math.sqrt((p + d - (p - d) ** 2) / n)
    return (value, n, value - half, value + half)


def same(measured: Measurement, expected: Expected) -> bool:
    got = (measured.value, measured.n, measured.ci_low, measured.ci_high)
    for a, b in zip(got, expected, strict=True):
        if a is None or b is None:
            if a is not b:
                return False
        elif a != pytest.approx(b, rel=1e-9, abs=1e-9):
            return False
    return True


def check(measured: Measurement, expected: Expected) -> None:
    assert same(measured, expected), f"engine {measured} != reference {expected}"


# --- a generated year of customers ---------------------------------------------------------------

START = dt.datetime(2025, 6, 1, tzinfo=UTC)
END = dt.datetime(2026, 6, 1, 9, 30, tzinfo=UTC)
TYPES = ["visit", "purchase", "login", "support_ticket", "survey", "signup"]
WEIGHTS = [35, 25, 15, 8, 10, 7]
SEGMENTS = ["smb", "enterprise", "consumer"]
CHANNELS = ["web", "store", "app", "phone", ""]
ZONES = [UTC, UTC, PARIS_SUMMER, AZORES, KOLKATA]
# The rules' boundaries the generated data puts events exactly on (DOMAIN §5).
WITHIN_DAYS = [1, 7, 30, 90]
INACTIVE_DAYS = [14, 60, 180]
WINDOWS = [None, 30, 120, 365]


def _value(rnd: random.Random, kind: str) -> Decimal | None:
    if kind == "survey":
        return None if rnd.random() < 0.1 else Decimal(rnd.randint(0, 10))
    if kind == "purchase":
        if rnd.random() < 0.15:
            return None
        if rnd.random() < 0.2:
            return Decimal(rnd.randrange(1, 10**9)) / Decimal(10**6)  # six decimals
        return Decimal(rnd.randint(100, 50_000)) / 100
    return None


def generate(seed: int = 2026) -> list[Row]:
    rnd = random.Random(seed)
    rows: list[Row] = []
    span = (END - START).total_seconds()
    for number in range(320):
        customer = f"c{number:03d}"
        if rnd.random() < 0.12:  # acquired in the last three weeks: not mature for long tests
            at = END - dt.timedelta(seconds=rnd.uniform(0, 21 * 86400))
        else:
            at = START + dt.timedelta(seconds=rnd.uniform(0, span * 0.97))
        segment = rnd.choice(SEGMENTS)
        for _ in range(rnd.randint(1, 18)):
            at = at.replace(microsecond=0 if rnd.random() < 0.5 else rnd.randrange(10**6))
            if at > END:
                break
            kind = rnd.choices(TYPES, WEIGHTS)[0]
            moved = rnd.random() < 0.1  # the segment at that moment
            rows.append(
                Row(
                    customer,
                    at.astimezone(rnd.choice(ZONES)),
                    kind,
                    _value(rnd, kind),
                    rnd.choice([*SEGMENTS, ""]) if moved else segment,
                    rnd.choice(CHANNELS),
                )
            )
            # Several events a day, sometimes across UTC midnight; sometimes days apart.
            gap = rnd.choice(["minutes", "minutes", "hours", "days", "weeks"])
            seconds = {"minutes": 600, "hours": 8 * 3600, "days": 5 * 86400, "weeks": 40 * 86400}
            at += dt.timedelta(seconds=rnd.uniform(1, seconds[gap]))
    rows.extend(_boundary_rows(rnd, max(r.at for r in rows)))
    return rows


def _boundary_rows(rnd: random.Random, as_of: dt.datetime) -> list[Row]:
    """Events planted exactly on each rule's edges, and one microsecond past them."""
    rows: list[Row] = []
    for number, days in enumerate(WITHIN_DAYS):
        first = START + dt.timedelta(days=20 + 7 * number, hours=23, minutes=59, microseconds=7)
        for offset, suffix in [(dt.timedelta(0), "on"), (MICROSECOND, "past")]:
            customer = f"edge-{days}-{suffix}"
            later = first + dt.timedelta(days=days) + offset
            rows += [
                Row(customer, first, "purchase", Decimal("10"), "smb", "web"),
                Row(customer, later, "purchase", Decimal("12.5"), "smb", "web"),
                Row(customer, first, "signup", None, "smb", "web"),
                Row(customer, later, "purchase", None, "smb", "web"),
            ]
            # Just mature, or a microsecond too young.
            mature = as_of - dt.timedelta(days=days) + offset
            rows += [
                Row(
                    f"mature-{days}-{suffix}",
                    mature,
                    "purchase",
                    Decimal("3"),
                    "enterprise",
                    "store",
                ),
                Row(f"mature-{days}-{suffix}", mature, "signup", None, "enterprise", "store"),
            ]
    for days in INACTIVE_DAYS:
        cut = as_of - dt.timedelta(days=days)
        for offset, suffix in [(dt.timedelta(0), "on"), (-MICROSECOND, "before")]:
            customer = f"cut-{days}-{suffix}"
            rows += [
                Row(
                    customer,
                    cut - dt.timedelta(days=rnd.randint(1, 30)),
                    "visit",
                    None,
                    "smb",
                    "web",
                ),
                Row(customer, cut + offset, "login", None, "smb", "web"),
            ]
    for days in WINDOWS[1:]:
        start = as_of - dt.timedelta(days=days)
        for offset, suffix in [(dt.timedelta(0), "on"), (MICROSECOND, "in")]:
            customer = f"window-{days}-{suffix}"
            rows += [
                Row(customer, start + offset, "survey", Decimal(9), "enterprise", "store"),
                Row(customer, start + offset, "purchase", Decimal("7.25"), "enterprise", "store"),
            ]
    return rows


@pytest.fixture
def year(plan) -> list[Row]:
    return store(plan, generate())


def views(plan, rows: list[Row]) -> list[View]:
    """The parameter combinations every metric is checked under."""
    latest = latest_event_at(plan.pk)
    assert latest == max(r.at for r in rows)
    pinned = dt.datetime(2026, 3, 15, 10, 30, 0, 250_000, tzinfo=UTC)
    filters = [
        (None, None),
        ("smb", None),
        (None, "web"),
        ("enterprise", "store"),
        ("nobody", None),
    ]
    return [
        View(as_of, segment, channel, window)
        for as_of in [latest, pinned, pinned.astimezone(KOLKATA)]
        for segment, channel in filters
        for window in WINDOWS
    ]


def compare(cases) -> None:
    """Run every (engine call, reference) pair; report all mismatches at once."""
    wrong = []
    count = 0
    for label, engine, reference in cases:
        count += 1
        measured, expected = engine(), reference()
        if not same(measured, expected):
            wrong.append(f"{label}: engine {measured} != reference {expected}")
    assert count > 0
    assert not wrong, f"{len(wrong)} of {count} differ:\n" + "\n".join(wrong[:20])


def test_the_generated_year_is_rich_enough(year):
    customers = {r.customer for r in year}
    assert len(year) > 2500 and len(customers) > 300
    assert any(r.value is None for r in year if r.type == "purchase")
    assert any(r.at.utcoffset() != dt.timedelta(0) for r in year)
    assert any(r.at.microsecond for r in year) and any(not r.at.microsecond for r in year)
    per_day = defaultdict(int)
    for r in year:
        per_day[(r.customer, utc_day(r.at))] += 1
    assert max(per_day.values()) >= 3


def test_active_customers_matches_the_reference(plan, year):
    compare(
        (
            f"{view} {kind}",
            lambda v=view, k=kind: metrics.active_customers(v.scope(plan), k),
            lambda v=view, k=kind: ref_active(year, v, k),
        )
        for view in views(plan, year)
        for kind in [None, "purchase", "survey"]
    )


def test_repeat_rate_matches_the_reference(plan, year):
    compare(
        (
            f"{view} {days}",
            lambda v=view, d=days: metrics.repeat_rate(v.scope(plan), "purchase", d),
            lambda v=view, d=days: ref_repeat(year, v, "purchase", d),
        )
        for view in views(plan, year)
        for days in WITHIN_DAYS
    )


def test_conversion_rate_matches_the_reference(plan, year):
    compare(
        (
            f"{view} {source}->{target} {days}",
            lambda v=view, s=source, t=target, d=days: metrics.conversion_rate(
                v.scope(plan), s, t, d
            ),
            lambda v=view, s=source, t=target, d=days: ref_conversion(year, v, s, t, d),
        )
        for view in views(plan, year)
        for source, target in [
            ("signup", "purchase"),
            ("visit", "purchase"),
            ("purchase", "purchase"),
        ]
        for days in WITHIN_DAYS
    )


def test_churn_rate_matches_the_reference(plan, year):
    compare(
        (
            f"{view} {days}",
            lambda v=view, d=days: metrics.churn_rate(v.scope(plan), d),
            lambda v=view, d=days: ref_churn(year, v, d),
        )
        for view in views(plan, year)
        for days in INACTIVE_DAYS
    )


def test_stage_reach_matches_the_reference(plan, year):
    stages = {stage.name: stage for stage in plan.stages.all()}
    event_map = {"visit": "Explore", "signup": "Buy", "purchase": "Buy", "login": "Use"}
    for kind, name in event_map.items():
        EventMapping.objects.create(plan=plan, event_type=kind, stage=stages[name])
    compare(
        (
            f"{view} {stage}",
            lambda v=view, s=stage: metrics.stage_reach(v.scope(plan), s),
            lambda v=view, s=stage: ref_stage_reach(
                year, v, {k for k, n in event_map.items() if n.lower() == s.lower()}
            ),
        )
        for view in views(plan, year)
        for stage in ["Buy", "explore", "ENGAGE"]  # Engage: a stage nothing is mapped to
    )


def test_mean_value_matches_the_reference(plan, year):
    compare(
        (
            f"{view} {kind}",
            lambda v=view, k=kind: metrics.mean_value(v.scope(plan), k),
            lambda v=view, k=kind: ref_mean(year, v, k),
        )
        for view in views(plan, year)
        for kind in ["purchase", "survey", "visit"]
    )


def test_total_value_matches_the_reference(plan, year):
    compare(
        (
            f"{view} {kind}",
            lambda v=view, k=kind: metrics.total_value(v.scope(plan), k),
            lambda v=view, k=kind: ref_total(year, v, k),
        )
        for view in views(plan, year)
        for kind in ["purchase", "survey", "visit"]
    )


def test_nps_matches_the_reference(plan, year):
    compare(
        (
            f"{view}",
            lambda v=view: metrics.nps(v.scope(plan)),
            lambda v=view: ref_nps(year, v),
        )
        for view in views(plan, year)
    )


# --- maturity, days and the "within N days" boundary ---------------------------------------------

AS_OF = moment("2026-06-30T12:00:00")


def test_customers_acquired_too_recently_are_not_in_repeat_rate(plan):
    add(
        plan,
        ("old", "2026-04-01T10:00", "purchase"),
        ("old", "2026-04-03T10:00", "purchase"),
        # exactly as_of − 30 days: just mature
        ("edge", "2026-05-31T12:00", "purchase"),
        ("edge", "2026-06-02T12:00", "purchase"),
        # a second too young, and last week's customer: both not mature, whatever they did
        ("young", "2026-05-31T12:00:01", "purchase"),
        ("young", "2026-06-02T12:00", "purchase"),
        ("new", "2026-06-24T09:00", "purchase"),
        ("late", AS_OF, "visit"),
    )
    measured = metrics.repeat_rate(Scope(plan.pk, AS_OF), "purchase", 30)
    check(measured, share(2, 2))


def test_customers_acquired_too_recently_are_not_in_conversion_rate(plan):
    add(
        plan,
        ("old", "2026-04-01T10:00", "signup"),
        ("edge", "2026-06-23T12:00", "signup"),  # exactly as_of − 7 days
        ("edge", "2026-06-24T09:00", "purchase"),
        ("young", "2026-06-23T12:00:00.000001", "signup"),
        ("young", "2026-06-24T09:00", "purchase"),
        ("late", AS_OF, "visit"),
    )
    measured = metrics.conversion_rate(Scope(plan.pk, AS_OF), "signup", "purchase", 7)
    check(measured, share(1, 2))


def test_a_second_purchase_the_same_utc_day_is_not_a_repeat(plan):
    add(
        plan,
        # 08:00 and 23:30 UTC the same day; the second written in Paris, where it is the next day
        ("same-day", "2026-03-01T08:00:00+00:00", "purchase"),
        ("same-day", "2026-03-02T01:30:00+02:00", "purchase"),
        # 23:30 UTC, then 00:45 UTC the next day, written in the Azores where it is the same day
        ("next-day", "2026-03-01T23:30:00+00:00", "purchase"),
        ("next-day", "2026-03-01T23:45:00-01:00", "purchase"),
        # a first order just before midnight UTC written in Paris (already the next local day)
        ("paris", "2026-03-02T01:59:59.999999+02:00", "purchase"),
        ("paris", "2026-03-02T00:00:00+00:00", "purchase"),
        ("late", AS_OF, "visit"),
    )
    scope = Scope(plan.pk, AS_OF)
    check(metrics.repeat_rate(scope, "purchase", 30), share(2, 3))
    scope = Scope(plan.pk, AS_OF, window_days=365)
    check(metrics.repeat_rate(scope, "purchase", 1), share(2, 3))


def test_several_orders_the_first_day_then_one_later_is_a_repeat(plan):
    add(
        plan,
        ("a", "2026-03-01T08:00", "purchase"),
        ("a", "2026-03-01T09:00", "purchase"),
        ("a", "2026-03-01T23:59:59.999999", "purchase"),
        ("a", "2026-03-05T10:00", "purchase"),
        ("b", "2026-03-01T08:00", "purchase"),
        ("b", "2026-03-01T20:00", "purchase"),
        ("late", AS_OF, "visit"),
    )
    check(metrics.repeat_rate(Scope(plan.pk, AS_OF), "purchase", 30), share(1, 2))


@pytest.mark.parametrize(
    "first",
    [
        "2026-03-01T10:00:00",
        "2026-03-01T10:00:00.123456",  # microseconds: exact to the microsecond on SQLite too
        "2026-03-01T23:59:59.999999",
        "2026-03-01T10:00:00.000500",
    ],
)
def test_within_n_days_includes_exactly_n_days_later_and_not_a_moment_more(plan, first):
    t0 = moment(first)
    limit = t0 + dt.timedelta(days=30)
    add(
        plan,
        ("on", t0, "purchase"),
        ("on", limit, "purchase"),
        ("second-past", t0, "purchase"),
        ("second-past", limit + SECOND, "purchase"),
        ("microsecond-past", t0, "purchase"),
        ("microsecond-past", limit + MICROSECOND, "purchase"),
        ("late", AS_OF, "visit"),
    )
    check(metrics.repeat_rate(Scope(plan.pk, AS_OF), "purchase", 30), share(1, 3))


@pytest.mark.parametrize("first", ["2026-03-01T10:00:00", "2026-03-01T10:00:00.123456"])
def test_conversion_counts_from_the_first_moment_to_exactly_n_days_after(plan, first):
    t0 = moment(first)
    limit = t0 + dt.timedelta(days=14)
    add(
        plan,
        ("same-moment", t0, "signup"),
        ("same-moment", t0, "purchase"),
        ("on", t0, "signup"),
        ("on", limit, "purchase"),
        ("past", t0, "signup"),
        ("past", limit + MICROSECOND, "purchase"),
        ("before", t0, "signup"),
        ("before", t0 - MICROSECOND, "purchase"),
        # only the first signup counts: a purchase soon after a later signup does not convert
        ("first-only", t0, "signup"),
        ("first-only", t0 + dt.timedelta(days=40), "signup"),
        ("first-only", t0 + dt.timedelta(days=41), "purchase"),
        ("late", AS_OF, "visit"),
    )
    check(metrics.conversion_rate(Scope(plan.pk, AS_OF), "signup", "purchase", 14), share(2, 5))


def test_conversion_of_customers_whose_first_event_is_before_the_window(plan):
    add(
        plan,
        ("early", "2026-01-10T10:00", "signup"),
        ("early", "2026-05-10T10:00", "signup"),  # not their first: not in a 90-day window
        ("early", "2026-05-11T10:00", "purchase"),
        ("inside", "2026-05-10T10:00", "signup"),
        ("inside", "2026-05-11T10:00", "purchase"),
        ("late", AS_OF, "visit"),
    )
    check(
        metrics.conversion_rate(Scope(plan.pk, AS_OF, window_days=90), "signup", "purchase", 7),
        share(1, 1),
    )
    check(metrics.conversion_rate(Scope(plan.pk, AS_OF), "signup", "purchase", 7), share(1, 2))


def test_repeat_rate_cohort_is_first_ever_purchase_among_the_filtered_events(plan):
    add(
        plan,
        # a web customer since January, who comes back in May: not new in a 90-day window
        ("loyal", "2026-01-05T10:00", "purchase", None, "", "web"),
        ("loyal", "2026-05-01T10:00", "purchase", None, "", "web"),
        ("loyal", "2026-05-03T10:00", "purchase", None, "", "web"),
        # first in store long ago, new to the web in May: new for a web-only test
        ("switcher", "2026-01-05T10:00", "purchase", None, "", "store"),
        ("switcher", "2026-05-01T10:00", "purchase", None, "", "web"),
        ("late", AS_OF, "visit"),
    )
    check(metrics.repeat_rate(Scope(plan.pk, AS_OF, window_days=90), "purchase", 30), share(0, 0))
    scope = Scope(plan.pk, AS_OF, channel="web", window_days=90)
    check(metrics.repeat_rate(scope, "purchase", 30), share(0, 1))
    check(metrics.repeat_rate(Scope(plan.pk, AS_OF, channel="web"), "purchase", 30), share(0, 2))


# --- windows, as_of, filters ---------------------------------------------------------------------


def test_a_window_excludes_older_events_and_its_start_itself(plan):
    start = AS_OF - dt.timedelta(days=30)
    add(
        plan,
        ("old", "2026-01-01T10:00", "purchase", "100"),
        ("on-start", start, "purchase", "20"),
        ("in", start + MICROSECOND, "purchase", "5"),
        ("recent", "2026-06-29T10:00", "purchase", "7.5"),
        ("recent", AS_OF, "purchase", "2.5"),
    )
    scope = Scope(plan.pk, AS_OF, window_days=30)
    check(metrics.active_customers(scope), (2.0, None, None, None))
    check(metrics.total_value(scope, "purchase"), (15.0, None, None, None))
    check(metrics.mean_value(scope, "purchase"), ref_mean_of(["5", "7.5", "2.5"]))
    everything = Scope(plan.pk, AS_OF)
    check(metrics.active_customers(everything), (4.0, None, None, None))
    check(metrics.total_value(everything, "purchase"), (135.0, None, None, None))


def ref_mean_of(values: list[str]) -> Expected:
    xs = [Fraction(Decimal(v)) for v in values]
    mean = sum(xs) / len(xs)
    s = math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1))
    half = 1.96 * s / math.sqrt(len(xs))
    return (float(mean), len(xs), float(mean) - half, float(mean) + half)


def test_churn_rate_ignores_the_window_but_honours_the_filters(plan):
    cut = AS_OF - dt.timedelta(days=60)
    add(
        plan,
        ("gone", "2025-09-01T10:00", "visit", None, "smb", "web"),
        ("gone-store", "2025-09-01T10:00", "visit", None, "smb", "store"),
        ("back", "2025-09-01T10:00", "visit", None, "smb", "web"),
        ("back", "2026-06-01T10:00", "login", None, "smb", "web"),
        ("at-cut", "2025-10-01T10:00", "visit", None, "smb", "web"),
        ("at-cut", cut, "login", None, "smb", "web"),  # an event at cut: not churned
        ("only-at-cut", cut, "visit", None, "smb", "web"),  # none before cut: not counted
        ("just-before", "2025-10-01T10:00", "visit", None, "smb", "web"),
        ("just-before", cut - MICROSECOND, "login", None, "smb", "web"),
        # back, but only in another segment: churned for an smb-only test
        ("moved", "2025-09-01T10:00", "visit", None, "smb", "web"),
        ("moved", "2026-06-20T10:00", "visit", None, "enterprise", "web"),
        ("late", AS_OF, "visit", None, "enterprise", "app"),
    )
    smb = Scope(plan.pk, AS_OF, segment="smb")
    check(metrics.churn_rate(smb, 60), share(4, 6))
    check(metrics.churn_rate(Scope(plan.pk, AS_OF, segment="smb", window_days=7), 60), share(4, 6))
    web = Scope(plan.pk, AS_OF, segment="smb", channel="web", window_days=30)
    check(metrics.churn_rate(web, 60), share(3, 5))
    check(metrics.churn_rate(Scope(plan.pk, AS_OF), 60), share(3, 6))


def test_churn_cut_with_microseconds(plan):
    as_of = moment("2026-06-30T12:00:00.654321")
    cut = as_of - dt.timedelta(days=30)
    add(
        plan,
        ("at-cut", "2026-01-01T00:00", "visit"),
        ("at-cut", cut, "visit"),
        ("before-cut", "2026-01-01T00:00", "visit"),
        ("before-cut", cut - MICROSECOND, "visit"),
        ("late", as_of, "visit"),
    )
    check(metrics.churn_rate(Scope(plan.pk, as_of), 30), share(1, 2))
    check(metrics.churn_rate(Scope(plan.pk, as_of.astimezone(KOLKATA)), 30), share(1, 2))


def every_metric(plan) -> dict[str, Measurement]:
    return every_metric_in(Scope(plan.pk, AS_OF))


def every_metric_in(scope: Scope) -> dict[str, Measurement]:
    return {
        "active": metrics.active_customers(scope),
        "active purchase": metrics.active_customers(scope, "purchase"),
        "repeat": metrics.repeat_rate(scope, "purchase", 7),
        "conversion": metrics.conversion_rate(scope, "signup", "purchase", 7),
        "churn": metrics.churn_rate(scope, 14),
        "reach": metrics.stage_reach(scope, "Buy"),
        "mean": metrics.mean_value(scope, "purchase"),
        "total": metrics.total_value(scope, "purchase"),
        "nps": metrics.nps(scope),
    }


def test_events_after_as_of_are_ignored_by_every_metric(plan):
    buy = Stage.objects.get(plan=plan, name="Buy")
    EventMapping.objects.create(plan=plan, event_type="purchase", stage=buy)
    add(
        plan,
        ("a", "2026-06-01T10:00", "signup"),
        ("a", "2026-06-02T10:00", "purchase", "10"),
        ("a", "2026-06-05T10:00", "purchase", "30"),
        ("a", "2026-06-20T10:00", "survey", 9),
        ("b", "2026-06-01T10:00", "signup"),
        ("b", "2026-06-01T11:00", "visit"),
        ("b", "2026-06-03T10:00", "purchase", "20"),
        ("b", "2026-06-25T10:00", "survey", 5),
        ("c", "2026-05-01T10:00", "visit"),
        ("c", "2026-06-10T10:00", "survey", 7),
        ("d", AS_OF, "visit"),
    )
    before = every_metric(plan)
    assert before["active"].value == 4.0 and before["total"].value == 60.0
    add(
        plan,
        # right after as_of: every kind of event, for old and new customers
        ("a", AS_OF + MICROSECOND, "survey", 0),
        ("b", AS_OF + SECOND, "purchase", "1000"),
        ("c", AS_OF + MICROSECOND, "purchase", "5"),
        ("c", AS_OF + DAY, "login"),
        ("e", AS_OF + DAY, "signup"),
        ("e", AS_OF + 2 * DAY, "purchase", "1"),
        ("e", AS_OF + 2 * DAY, "survey", 10),
    )
    assert every_metric(plan) == before
    assert latest_event_at(plan.pk) == AS_OF + 2 * DAY


def test_as_of_defaults_to_the_plans_latest_event_before_any_filter(plan, choice):
    latest = moment("2026-06-30T18:22:05.5+02:00")
    add(
        plan,
        ("a", "2026-01-10T10:00", "purchase", None, "smb"),
        ("b", "2026-05-10T10:00", "purchase", None, "smb"),
        ("c", latest, "visit", None, "enterprise"),
    )
    assert latest_event_at(plan.pk) == latest
    # Only smb events are kept, the latest of them in May; as_of stays the plan's latest moment,
    # so a 30-day window holds none of them.
    test = make_assumption(
        choice,
        "active_customers",
        {"event_type": "purchase"},
        ">=",
        1,
        segment="smb",
        window_days=30,
    )
    run = retest_assumption(test)
    assert run.as_of == latest
    assert (run.observed, run.n, run.status) == (0.0, None, AssumptionStatus.BROKEN)
    wider = make_assumption(
        choice, "active_customers", {}, ">=", 1, segment="smb", window_days=60, statement="wider"
    )
    assert retest_assumption(wider).observed == 1.0


# --- stage_reach and the event map ---------------------------------------------------------------


def test_stage_reach_uses_the_event_map_with_any_case_of_stage_name(plan):
    buy = Stage.objects.get(plan=plan, name="Buy")
    EventMapping.objects.create(plan=plan, event_type="purchase", stage=buy)
    EventMapping.objects.create(plan=plan, event_type="signup", stage=buy)
    add(
        plan,
        ("a", "2026-06-01T10:00", "purchase"),
        ("b", "2026-06-01T10:00", "signup"),
        ("b", "2026-06-02T10:00", "purchase"),
        ("c", "2026-06-01T10:00", "visit"),
        ("d", "2026-01-01T10:00", "purchase"),  # outside a 90-day window
        ("d", "2026-06-01T10:00", "visit"),
        ("e", AS_OF, "support_ticket"),
    )
    for name in ["Buy", "buy", "BUY"]:
        check(metrics.stage_reach(Scope(plan.pk, AS_OF, window_days=90), name), share(2, 5))
    check(metrics.stage_reach(Scope(plan.pk, AS_OF), "bUy"), share(3, 5))
    # A stage nothing is mapped to is reached by no one; not an error.
    check(metrics.stage_reach(Scope(plan.pk, AS_OF), "Engage"), share(0, 5))


def test_stage_reach_of_an_unknown_stage_is_an_error_that_names_it(plan, choice):
    add(plan, ("a", AS_OF, "purchase"))
    with pytest.raises(MetricError, match="Retain"):
        metrics.stage_reach(Scope(plan.pk, AS_OF), "Retain")
    test = make_assumption(choice, "stage_reach", {"stage": "Retain"}, ">=", 0.5, min_sample=1)
    outcome = evaluate(test, plan.pk, AS_OF)
    assert outcome.status == AssumptionStatus.ERROR
    assert "Retain" in outcome.message and "stage" in outcome.message
    assert outcome.measurement.value is None


# --- values: mean, total, NPS --------------------------------------------------------------------


def test_mean_value_of_one_value_is_insufficient_data(plan, choice):
    add(
        plan,
        ("a", "2026-06-01T10:00", "purchase", "42.5"),
        ("a", "2026-06-02T10:00", "purchase"),  # no value: left out
        ("b", AS_OF, "visit", "7"),
    )
    measured = metrics.mean_value(Scope(plan.pk, AS_OF), "purchase")
    check(measured, (42.5, 1, None, None))
    test = make_assumption(choice, "mean_value", {"event_type": "purchase"}, ">=", 10, min_sample=1)
    outcome = evaluate(test, plan.pk, AS_OF)
    assert outcome.status == AssumptionStatus.INSUFFICIENT_DATA
    assert outcome.message


def test_mean_value_is_the_mean_with_its_t_free_interval(plan):
    add(
        plan,
        ("a", "2026-06-01T10:00", "purchase", "10.5"),
        ("a", "2026-06-02T10:00", "purchase", "20.25"),
        ("b", "2026-06-01T10:00", "purchase", "33.125"),
        ("b", "2026-06-03T10:00", "purchase", "0.000001"),
        ("b", "2026-06-04T10:00", "purchase"),
        ("c", AS_OF, "purchase", "-4"),
    )
    measured = metrics.mean_value(Scope(plan.pk, AS_OF), "purchase")
    values = [Fraction("10.5"), Fraction("20.25"), Fraction("33.125"), Fraction("0.000001"), -4]
    mean = sum(values) / 5
    s = math.sqrt(sum((v - mean) ** 2 for v in values) / 4)
    check(
        measured,
        (
            float(mean),
            5,
            float(mean) - 1.96 * s / math.sqrt(5),
            float(mean) + 1.96 * s / math.sqrt(5),
        ),
    )


def test_mean_value_of_large_amounts_with_a_small_spread(plan):
    amounts = [f"1000000.{i:02d}" for i in range(8)]  # a million, give or take a few cents
    add(
        plan,
        *[(f"c{i}", f"2026-06-{10 + i:02d}T10:00", "purchase", a) for i, a in enumerate(amounts)],
        ("late", AS_OF, "visit"),
    )
    value, n, low, high = ref_mean_of(amounts)
    measured = metrics.mean_value(Scope(plan.pk, AS_OF), "purchase")
    assert (measured.value, measured.n) == (value, n)
    assert measured.ci_high - measured.value == pytest.approx(high - value, rel=1e-6)
    assert measured.value - measured.ci_low == pytest.approx(value - low, rel=1e-6)


def test_means_are_computed_on_the_stored_decimals(plan, choice):
    add(
        plan,
        ("a", "2026-06-01T10:00", "purchase", "0.1"),
        ("b", AS_OF, "purchase", "0.2"),
    )
    assert metrics.mean_value(Scope(plan.pk, AS_OF), "purchase").value == 0.15


def test_total_value_of_nothing_is_zero_and_the_point_value_decides(plan, choice):
    add(plan, ("a", AS_OF, "visit"))
    measured = metrics.total_value(Scope(plan.pk, AS_OF), "purchase")
    check(measured, (0.0, None, None, None))
    at_least_zero = make_assumption(choice, "total_value", {"event_type": "purchase"}, ">=", 0)
    at_least_one = make_assumption(
        choice, "total_value", {"event_type": "purchase"}, ">=", 1, statement="one"
    )
    assert at_least_zero.min_sample == 30  # does not apply to totals
    assert evaluate(at_least_zero, plan.pk, AS_OF).status == AssumptionStatus.HOLDS
    assert evaluate(at_least_one, plan.pk, AS_OF).status == AssumptionStatus.BROKEN


def test_total_value_sums_the_stored_decimals(plan, choice):
    add(
        plan,
        ("a", "2026-06-01T10:00", "purchase", "0.1"),
        ("a", "2026-06-02T10:00", "purchase", "0.2"),
        ("a", "2026-06-02T11:00", "purchase"),
        ("b", AS_OF, "refund", "-0.3"),
    )
    scope = Scope(plan.pk, AS_OF)
    assert metrics.total_value(scope, "purchase") == Measurement(0.3, None)
    at_most = make_assumption(choice, "total_value", {"event_type": "purchase"}, "<=", 0.3)
    assert evaluate(at_most, plan.pk, AS_OF).status == AssumptionStatus.HOLDS
    add(plan, ("c", "2026-06-03T10:00", "purchase", "12345678.123456"))
    assert metrics.total_value(scope, "purchase").value == 12345678.423456
    assert metrics.total_value(scope, "refund").value == -0.3


def test_counts_have_no_sample_and_the_point_value_decides(plan, choice):
    add(plan, ("a", "2026-06-01T10:00", "visit"), ("b", AS_OF, "purchase"))
    check(metrics.active_customers(Scope(plan.pk, AS_OF)), (2.0, None, None, None))
    check(metrics.active_customers(Scope(plan.pk, AS_OF), "purchase"), (1.0, None, None, None))
    two = make_assumption(choice, "active_customers", {}, ">=", 2)
    three = make_assumption(choice, "active_customers", {}, ">=", 3, statement="three")
    assert evaluate(two, plan.pk, AS_OF).status == AssumptionStatus.HOLDS
    assert evaluate(three, plan.pk, AS_OF).status == AssumptionStatus.BROKEN


def test_nps_takes_each_customers_latest_score(plan):
    at = moment("2026-06-10T10:00:00.5")
    add(
        plan,
        ("a", "2026-05-01T10:00", "survey", 2),
        ("a", "2026-06-01T10:00", "survey", 10),  # a's latest: promoter
        ("b", "2026-05-01T10:00", "survey", 10),
        ("b", "2026-06-01T10:00", "survey", 6),  # b's latest: detractor
        ("c", "2026-06-01T10:00", "survey", 9),
        ("c", "2026-06-02T10:00", "survey"),  # no score: c's latest score stays 9
        ("d", "2026-06-01T10:00", "survey", 8),  # passive
        ("e", at, "survey", 10),  # a tie on the moment: the one stored last counts
        ("e", at, "survey", 3),
        ("f", "2026-06-01T10:00", "review", 0),  # not a survey
        ("g", AS_OF, "visit"),
    )
    measured = metrics.nps(Scope(plan.pk, AS_OF))
    p, d, n = 2 / 5, 2 / 5, 5
    check(
        measured,
        (0.0, n, -1.96 * 100 * math.sqrt((p + d) / n), 1.96 * 100 * math.sqrt((p + d) / n)),
    )
    check(metrics.nps(Scope(plan.pk, AS_OF), "review"), (-100.0, 1, -100.0, -100.0))


def test_nps_takes_the_latest_score_in_the_window_and_up_to_as_of(plan):
    as_of = moment("2026-06-15T00:00")
    add(
        plan,
        ("a", "2026-01-01T10:00", "survey", 0),  # before a 90-day window
        ("a", "2026-06-01T10:00", "survey", 9),
        ("a", "2026-06-20T10:00", "survey", 1),  # after as_of
        ("b", "2026-01-01T10:00", "survey", 10),
        ("b", "2026-06-14T10:00", "survey", 7),
        ("c", "2026-01-01T10:00", "survey", 3),
    )
    check(metrics.nps(Scope(plan.pk, as_of, window_days=90)), ref_nps_of([9, 7]))
    check(metrics.nps(Scope(plan.pk, as_of)), ref_nps_of([9, 7, 3]))


def ref_nps_of(scores: list[int]) -> Expected:
    n = len(scores)
    p = len([s for s in scores if s >= 9]) / n
    d = len([s for s in scores if s <= 6]) / n
    half = 196 * math.sqrt((p + d - (p - d) ** 2) / n)
    return (100 * (p - d), n, 100 * (p - d) - half, 100 * (p - d) + half)


# --- samples, intervals and statuses -------------------------------------------------------------


@pytest.mark.parametrize(
    ("metric", "params"),
    [
        ("repeat_rate", {"event_type": "purchase", "within_days": 7}),
        ("conversion_rate", {"from_event": "signup", "to_event": "purchase", "within_days": 7}),
        ("churn_rate", {"inactive_days": 14}),
        ("stage_reach", {"stage": "Buy"}),
        ("mean_value", {"event_type": "purchase"}),
        ("nps", {}),
    ],
)
def test_an_empty_segment_is_insufficient_data_not_a_division_by_zero(plan, choice, metric, params):
    add(
        plan,
        ("a", "2026-01-01T10:00", "signup", None, "smb"),
        ("a", "2026-01-02T10:00", "purchase", "5", "smb"),
        ("a", "2026-01-05T10:00", "purchase", "7", "smb"),
        ("a", "2026-01-05T10:00", "survey", 9, "smb"),
        ("b", AS_OF, "visit", None, "smb"),
    )
    test = make_assumption(choice, metric, params, ">=", 0, min_sample=1, segment="nobody")
    outcome = evaluate(test, plan.pk, AS_OF)
    assert outcome.measurement.n == 0 and outcome.measurement.value is None
    assert outcome.status == AssumptionStatus.INSUFFICIENT_DATA
    assert outcome.message
    everyone = make_assumption(choice, metric, params, ">=", -1000, min_sample=1, statement="all")
    assert evaluate(everyone, plan.pk, AS_OF).measurement.n > 0


def test_a_sample_below_min_sample_is_insufficient_data(plan, choice):
    add(
        plan,
        *[(f"c{i}", f"2026-06-0{i + 1}T10:00", "visit") for i in range(4)],
        ("c0", "2026-06-20T10:00", "purchase"),
        ("late", AS_OF, "visit"),
    )
    buy = Stage.objects.get(plan=plan, name="Buy")
    EventMapping.objects.create(plan=plan, event_type="purchase", stage=buy)
    five = make_assumption(choice, "stage_reach", {"stage": "Buy"}, ">=", 0.1, min_sample=6)
    outcome = evaluate(five, plan.pk, AS_OF)
    assert outcome.status == AssumptionStatus.INSUFFICIENT_DATA
    assert outcome.measurement.n == 5
    assert "5" in outcome.message and "6" in outcome.message
    enough = make_assumption(
        choice, "stage_reach", {"stage": "Buy"}, ">=", 0.01, min_sample=5, statement="five"
    )
    assert evaluate(enough, plan.pk, AS_OF).status == AssumptionStatus.HOLDS


def unsaved(metric="repeat_rate", comparator=">=", threshold=0.3, high=None, min_sample=30):
    return Assumption(
        metric=metric,
        comparator=comparator,
        threshold=threshold,
        threshold_high=high,
        min_sample=min_sample,
    )


@pytest.mark.parametrize(
    ("comparator", "low", "high", "status"),
    [
        (">=", 0.31, 0.40, "holds"),
        (">=", 0.30, 0.40, "holds"),  # thresholds are inclusive
        (">=", 0.25, 0.35, "at_risk"),
        (">=", 0.20, 0.30, "at_risk"),
        (">=", 0.10, 0.29, "broken"),
        ("<=", 0.10, 0.29, "holds"),
        ("<=", 0.20, 0.30, "holds"),
        ("<=", 0.25, 0.35, "at_risk"),
        ("<=", 0.30, 0.40, "at_risk"),
        ("<=", 0.31, 0.40, "broken"),
    ],
)
def test_the_interval_decides_the_status(comparator, low, high, status):
    assumption = unsaved(comparator=comparator)
    assert verdict(assumption, Measurement((low + high) / 2, 100, low, high)) == status


@pytest.mark.parametrize(
    ("low", "high", "status"),
    [
        (0.25, 0.35, "holds"),
        (0.20, 0.40, "holds"),
        (0.15, 0.35, "at_risk"),
        (0.35, 0.45, "at_risk"),
        (0.10, 0.50, "at_risk"),
        (0.05, 0.19, "broken"),
        (0.41, 0.60, "broken"),
    ],
)
def test_between_holds_is_at_risk_or_broken(low, high, status):
    assumption = unsaved(comparator="between", threshold=0.2, high=0.4)
    assert verdict(assumption, Measurement((low + high) / 2, 100, low, high)) == status


@pytest.mark.parametrize(
    ("comparator", "threshold", "status"),
    [
        (">=", 0.3, "holds"),
        (">=", 0.5, "at_risk"),
        (">=", 0.7, "broken"),
        ("<=", 0.7, "holds"),
        ("<=", 0.5, "at_risk"),
        ("<=", 0.3, "broken"),
        ("between", (0.3, 0.7), "holds"),
        ("between", (0.4, 0.6), "at_risk"),
        ("between", (0.7, 0.9), "broken"),
    ],
)
def test_statuses_from_real_data(plan, choice, comparator, threshold, status):
    rows = []
    for i in range(40):  # 40 customers, half of them back two days later: 50% [35%, 65%]
        rows.append((f"c{i}", "2026-03-01T10:00", "purchase"))
        if i % 2:
            rows.append((f"c{i}", "2026-03-03T10:00", "purchase"))
    add(plan, *rows, ("late", AS_OF, "visit"))
    test = make_assumption(
        choice, "repeat_rate", {"event_type": "purchase", "within_days": 30}, comparator, threshold
    )
    outcome = evaluate(test, plan.pk, AS_OF)
    check(outcome.measurement, share(20, 40))
    assert outcome.status == status
    assert outcome.message == ""


def test_a_point_value_decides_between_for_counts(plan, choice):
    add(plan, *[(f"c{i}", AS_OF - i * DAY, "visit") for i in range(5)])
    inside = make_assumption(choice, "active_customers", {}, "between", (5, 5))
    outside = make_assumption(choice, "active_customers", {}, "between", (6, 9), statement="no")
    assert evaluate(inside, plan.pk, AS_OF).status == AssumptionStatus.HOLDS
    assert evaluate(outside, plan.pk, AS_OF).status == AssumptionStatus.BROKEN


def test_nps_interval_decides_like_any_other(plan, choice):
    scores = [10] * 30 + [9] * 10 + [8] * 5 + [3] * 5  # NPS 70, n 50
    add(plan, *[(f"c{i}", AS_OF - i * SECOND, "survey", s) for i, s in enumerate(scores)])
    expected = ref_nps_of(scores)
    check(metrics.nps(Scope(plan.pk, AS_OF)), expected)
    assert 50 < expected[2] < 70 < expected[3] < 90
    holds = make_assumption(choice, "nps", {}, ">=", 50)
    risky = make_assumption(choice, "nps", {}, ">=", 70, statement="70")
    broken = make_assumption(choice, "nps", {}, "<=", 40, statement="40")
    assert evaluate(holds, plan.pk, AS_OF).status == AssumptionStatus.HOLDS
    assert evaluate(risky, plan.pk, AS_OF).status == AssumptionStatus.AT_RISK
    assert evaluate(broken, plan.pk, AS_OF).status == AssumptionStatus.BROKEN


def test_a_test_with_params_that_do_not_fit_its_metric_is_an_error(plan, choice):
    add(plan, ("a", AS_OF, "purchase"))
    missing = make_assumption(choice, "repeat_rate", {"event_type": "purchase"})
    stray = make_assumption(choice, "churn_rate", {"stage": "Buy"}, statement="stray")
    for test, named in [(missing, "within_days"), (stray, "stage")]:
        outcome = evaluate(test, plan.pk, AS_OF)
        assert outcome.status == AssumptionStatus.ERROR
        assert named in outcome.message
        assert outcome.measurement.value is None


def test_event_type_names_in_a_test_are_compared_lower_case(plan, choice):
    add(plan, ("a", "2026-06-01T10:00", "purchase", "4"), ("b", AS_OF, "purchase", "6"))
    test = make_assumption(
        choice, "total_value", {"event_type": "Purchase"}, ">=", 10, min_sample=1
    )
    outcome = evaluate(test, plan.pk, AS_OF)
    assert (outcome.measurement.value, outcome.status) == (10.0, AssumptionStatus.HOLDS)


def test_spans_longer_than_the_calendar_reach_past_every_event(plan, choice):
    add(
        plan,
        ("a", "2026-01-01T10:00", "purchase"),
        ("a", "2026-01-02T10:00", "purchase"),
        ("b", AS_OF, "visit"),
    )
    huge = 10**9
    scope = Scope(plan.pk, AS_OF, window_days=huge)
    check(metrics.active_customers(scope), (2.0, None, None, None))
    check(metrics.repeat_rate(scope, "purchase", huge), share(0, 0))
    check(metrics.conversion_rate(scope, "purchase", "visit", huge), share(0, 0))
    check(metrics.churn_rate(scope, huge), share(0, 0))
    check(metrics.repeat_rate(scope, "purchase", 3_000_000), share(0, 0))
    test = make_assumption(
        choice, "repeat_rate", {"event_type": "purchase", "within_days": huge}, window_days=huge
    )
    outcome = evaluate(test, plan.pk, AS_OF)
    assert outcome.status == AssumptionStatus.INSUFFICIENT_DATA
