"""Customer lifetime value (DOMAIN §9) on whichever database the run uses.

The fits against the published CDNOW values; the per-customer summaries against a plain-Python
computation written here from the domain's rules; the model's predictions against a direct
numerical integration over the BG/NBD's own assumptions (no closed form of the engine's); the
holdout test against both.
"""

from __future__ import annotations

import datetime as dt
import io
import itertools
import json
import math
import os
import random
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from scipy.integrate import quad

from insights.clv import BgNbd, customer_summaries
from insights.metrics import Scope
from tests.insights.events import store

pytestmark = pytest.mark.django_db

UTC = dt.UTC
CDNOW = Path(__file__).parent / "data" / "CDNOW_sample.txt"


@dataclass(frozen=True)
class Row:
    customer: str
    at: dt.datetime
    type: str = "purchase"
    value: Decimal | None = None
    segment: str = ""
    channel: str = ""


def clv_json(plan, *args: str) -> dict:
    out = io.StringIO()
    call_command("clv", plan.slug, "--json", *args, stdout=out)
    return json.loads(out.getvalue())


# --- the reference: DOMAIN §9 in plain Python ---------------------------------------------------


@dataclass(frozen=True)
class Summary:
    x: int
    t_x: float
    T: float
    valued: int  # days after the first with a value
    m: float | None  # the mean of those days' values
    segment: str


def reference_summaries(
    rows: list[Row], as_of: dt.datetime, event_type="purchase", segment="", channel=""
) -> dict[str, Summary]:
    kept = [
        (i, row)
        for i, row in enumerate(rows)
        if row.at <= as_of
        and row.type == event_type
        and (not segment or row.segment == segment)
        and (not channel or row.channel == channel)
    ]
    days: dict[str, dict[dt.date, list[Decimal | None]]] = defaultdict(lambda: defaultdict(list))
    latest: dict[str, tuple[dt.datetime, int, str]] = {}
    for i, row in kept:
        days[row.customer][row.at.astimezone(UTC).date()].append(row.value)
        if row.customer not in latest or (row.at, i) > latest[row.customer][:2]:
            latest[row.customer] = (row.at, i, row.segment)
    as_of_day = as_of.astimezone(UTC).date()
    out = {}
    for customer, by_day in days.items():
        first, last = min(by_day), max(by_day)
        repeat = [
            sum(v for v in values if v is not None)
            for day, values in by_day.items()
            if day > first and any(v is not None for v in values)
        ]
        out[customer] = Summary(
            x=len(by_day) - 1,
            t_x=(last - first).days / 7,
            T=(as_of_day - first).days / 7,
            valued=len(repeat),
            m=float(sum(repeat) / len(repeat)) if repeat else None,
            segment=latest[customer][2],
        )
    return out


def rising(base: float, n: int) -> float:
    """log Γ(base+n) − log Γ(base) for a whole n, as the log of the product it is."""
    return math.fsum(math.log(base + j) for j in range(n))


def bgnbd_log_likelihood(r, alpha, a, b, s: Summary) -> float:
    """Fader, Hardie & Lee (2005), eq. 6, term by term; B(a, b+x)/B(a, b) and
    B(a+1, b+x−1)/B(a, b) as the products they are."""
    x = s.x
    common = rising(r, x) + r * math.log(alpha)
    alive = rising(b, x) - rising(a + b, x) - (r + x) * math.log(alpha + s.T)
    if x == 0:
        return common + alive
    dropped = math.log(a) + rising(b, x - 1) - rising(a + b, x) - (r + x) * math.log(alpha + s.t_x)
    top = max(alive, dropped)
    return common + top + math.log(math.exp(alive - top) + math.exp(dropped - top))


def gamma_gamma_log_likelihood(p, q, gamma, x, m) -> float:
    """Fader & Hardie (2013): the density of a mean m of x gamma(p, ν) values, ν ~ gamma(q, γ)."""
    return (
        math.lgamma(p * x + q)
        - math.lgamma(p * x)
        - math.lgamma(q)
        + q * math.log(gamma)
        + (p * x - 1) * math.log(m)
        + p * x * math.log(x)
        - (p * x + q) * math.log(gamma + m * x)
    )


def direct_prediction(r, alpha, a, b, x, t_x, T, t) -> tuple[float, float]:
    """E[Y(t) | x, t_x, T] and P(alive at T), integrated numerically from the model itself.

    Given λ and p, a customer alive at T buys (1 − e^(−λpt))/p times in the next t weeks (FHL
    eq. 7); the history's likelihood is (1−p)^x λ^x e^(−λT) alive, plus p(1−p)^(x−1) λ^x
    e^(−λ t_x) having dropped out after the last purchase. λ ~ gamma(r, alpha) integrates in
    closed form (a gamma integral); p ~ beta(a, b) numerically: its density as quad's weight,
    or, when a and b are large and the beta narrow, written out around its mean. Everything
    is scaled by (alpha+T)^(r+x)."""
    k = r + x
    # The terms share the beta's density times (1−p)^x: beta(a, b+x) up to a constant, the
    # weight (p^da (1−p)^db more) of each integral.
    b_x = b + x
    if a >= 1 and b_x >= 1:  # a smooth integrand: around the weight's peak
        mean = a / (a + b_x)
        sd = math.sqrt(a * b_x / ((a + b_x) ** 2 * (a + b_x + 1)))
        low, high = max(mean - 40 * sd, 0.0), min(mean + 40 * sd, 1.0)
        peak = (a - 1) * math.log(mean) + (b_x - 1) * math.log1p(-mean)

        def integral(f, da=0, db=0) -> float:
            def weighted(p):
                log_weight = (a - 1 + da) * math.log(p) + (b_x - 1 + db) * math.log1p(-p)
                return f(p) * math.exp(log_weight - peak)

            return quad(weighted, low, high, points=[mean], epsabs=0, epsrel=1e-12, limit=400)[0]
    else:  # a singular weight: quad's own algebraic weights

        def integral(f, da=0, db=0) -> float:
            return quad(
                f,
                0,
                1,
                weight="alg",
                wvar=(a - 1 + da, b_x - 1 + db),
                epsabs=0,
                epsrel=1e-11,
                limit=200,
            )[0]

    def one(p):
        return 1.0

    def ahead(p):
        if p == 0:  # the limit: kt/(alpha+T)
            return k * t / (alpha + T)
        return -math.expm1(-k * math.log1p(p * t / (alpha + T))) / p

    alive = integral(one)
    # Dropped out after the last purchase: p (1−p)^(x−1), relative to alive's (1−p)^x.
    dropped = integral(one, 1, -1) * ((alpha + T) / (alpha + t_x)) ** k if x else 0.0
    return integral(ahead) / (alive + dropped), alive / (alive + dropped)


def simulated_rows(seed: int, customers: int, segments=("", "retail", "smb")) -> list[Row]:
    """Customers drawn from the models themselves (λ ~ gamma(0.6, 5 per week), p ~ beta(0.9,
    3), spend ~ gamma(4, ν), ν ~ gamma(3, 20)): fits land inside the parameter space."""
    rnd = random.Random(seed)
    start = dt.datetime(2024, 1, 1, tzinfo=UTC)
    end = start + dt.timedelta(weeks=60)
    rows = []
    for n in range(customers):
        rate = rnd.gammavariate(0.6, 1 / 5)
        drop = rnd.betavariate(0.9, 3)
        scale = rnd.gammavariate(3, 1 / 20)
        segment = rnd.choice(segments)
        at = start + dt.timedelta(weeks=rnd.uniform(0, 12))
        first = True
        while at <= end:
            value = Decimal(str(max(round(rnd.gammavariate(4, 1 / scale), 2), 0.01)))
            rows.append(Row(f"s{n:04d}", at, value=value, segment=segment, channel="web"))
            if not first and rnd.random() < drop:  # drop-out comes after repeat purchases
                break
            first = False
            at += dt.timedelta(weeks=min(rnd.expovariate(rate), 1000))
    return rows


# --- the known answer: CDNOW --------------------------------------------------------------------


def cdnow_rows() -> list[Row]:
    rows = []
    for line in CDNOW.read_text().splitlines():
        master, _sample, day, _quantity, amount = line.split()
        at = dt.datetime.strptime(day, "%Y%m%d").replace(tzinfo=UTC)
        rows.append(Row(master, at, value=Decimal(amount)))
    return rows


@pytest.fixture
def cdnow(plan) -> list[Row]:
    return store(plan, cdnow_rows())


def test_cdnow_reproduces_the_published_fits(plan, cdnow):
    report = clv_json(plan, "--as-of", "1997-09-30T23:59:59")

    assert report["as_of"] == "1997-09-30T23:59:59+00:00"
    assert report["event_type"] == "purchase"
    assert report["customers"] == 2357
    assert report["repeat_customers"] == 946
    fit = report["bgnbd"]
    # Published: r 0.2426, alpha 4.414, a 0.793, b 2.426, LL −9582.43.
    assert round(fit["r"], 4) == 0.2426
    assert round(fit["alpha"], 3) == 4.414
    assert round(fit["a"], 3) == 0.793
    assert round(fit["b"], 3) == 2.426
    assert round(fit["log_likelihood"], 2) == -9582.43
    spend = report["gamma_gamma"]
    # Published: p 6.25, q 3.74, γ 15.44, LL −4055.92.
    assert round(spend["p"], 2) == 6.25
    assert round(spend["q"], 2) == 3.74
    assert round(spend["gamma"], 2) == 15.44
    assert round(spend["log_likelihood"], 2) == -4055.92
    assert report["horizon_weeks"] == 52
    assert report["segments"] and report["segments"][0]["segment"] == ""


def test_cdnow_predictions_and_holdout(plan, cdnow):
    as_of = dt.datetime(1997, 9, 30, 23, 59, 59, tzinfo=UTC)
    report = clv_json(plan, "--as-of", as_of.isoformat(), "--horizon-weeks", "39")
    fit = report["bgnbd"]
    summaries = reference_summaries(cdnow, as_of)
    params = fit["r"], fit["alpha"], fit["a"], fit["b"]

    # Fader & Hardie's worked example ("Implementing the BG/NBD model for customer base
    # analysis in Excel"): ID 1, x 2, t_x 30.43, T 38.86 → 1.226 purchases in the next 39 weeks.
    one = summaries["00004"]
    assert (one.x, round(one.t_x, 2), round(one.T, 2)) == (2, 30.43, 38.86)
    model = BgNbd(*params, log_likelihood=fit["log_likelihood"])
    assert round(float(model.expected_purchases(39, [2], [30.43], [38.86])[0]), 3) == 1.226

    # Holdout: the cohort's purchase days in each of the 39 weeks after 30 September 1997.
    actual = [0] * 39
    for _customer, day in {(row.customer, row.at.date()) for row in cdnow}:
        offset = (day - as_of.date()).days
        if offset > 0:
            actual[(offset - 1) // 7] += 1
    holdout = report["holdout"]
    assert holdout["through"] == "1998-06-30T00:00:00+00:00"
    assert [w["actual"] for w in holdout["weeks"]] == actual
    assert holdout["weeks"][0]["start"] == "1997-10-01"
    assert holdout["weeks"][-1]["end"] == "1998-06-30"
    assert not any(w["partial"] for w in holdout["weeks"])
    assert holdout["actual"] == sum(actual)
    # Predicted: the summed conditional expectations over the 39 weeks, which is also the
    # horizon's expected purchases here.
    assert sum(w["predicted"] for w in holdout["weeks"]) == pytest.approx(holdout["predicted"])
    assert holdout["predicted"] == pytest.approx(report["expected_purchases"])


# --- per-customer summaries against DOMAIN ------------------------------------------------------


def generated_rows(seed: int = 7, customers: int = 80) -> list[Row]:
    """A year of purchases and visits with same-day repeats, odd hours, values missing now
    and then, customers changing segment, two channels."""
    rnd = random.Random(seed)
    start = dt.datetime(2025, 1, 1, tzinfo=UTC)
    rows = []
    for n in range(customers):
        customer = f"c{n:03d}"
        at = start + dt.timedelta(days=rnd.randrange(300), seconds=rnd.randrange(86400))
        segment = rnd.choice(["", "retail", "smb"])
        for _ in range(rnd.choice([1, 1, 2, 3, 5, 8])):
            for _repeat in range(rnd.choice([1, 1, 1, 2, 3])):  # same-day repeats
                same_day = at.replace(hour=rnd.randrange(24), minute=rnd.randrange(60))
                value = None if rnd.random() < 0.15 else Decimal(rnd.randrange(100, 20000)) / 100
                rows.append(
                    Row(
                        customer,
                        same_day,
                        rnd.choice(["purchase"] * 4 + ["visit"]),
                        value,
                        segment,
                        rnd.choice(["web", "store"]),
                    )
                )
            if rnd.random() < 0.2:
                segment = rnd.choice(["retail", "smb"])
            at += dt.timedelta(days=rnd.randrange(1, 60))
    # Two events at the very same latest moment: the one stored last gives the segment.
    tie = dt.datetime(2025, 12, 30, 10, tzinfo=UTC)
    rows += [
        Row("tie", tie, value=Decimal(5), segment="smb"),
        Row("tie", tie, value=Decimal(6), segment="retail"),
    ]
    rnd.shuffle(rows)
    return rows


@pytest.mark.parametrize(
    ("as_of", "filters"),
    [
        (None, {}),
        ("2025-08-15T13:30:00", {}),
        ("2025-08-15", {"segment": "retail"}),
        ("2025-10-01T00:00:00+05:30", {"channel": "web"}),
        (None, {"segment": "smb", "channel": "store"}),
    ],
)
def test_summaries_follow_the_domain(plan, as_of, filters):
    rows = store(plan, generated_rows())
    latest = max(row.at for row in rows)
    moment = dt.datetime.fromisoformat(as_of) if as_of else latest
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    expected = reference_summaries(rows, moment, **filters)

    got = customer_summaries(Scope(plan.pk, moment, **filters), "purchase")

    assert sorted(got.customers) == sorted(expected)
    for i, customer in enumerate(got.customers):
        want = expected[customer]
        assert got.x[i] == want.x, customer
        assert got.t_x[i] == pytest.approx(want.t_x, abs=1e-12), customer
        assert got.T[i] == pytest.approx(want.T, abs=1e-12), customer
        assert got.valued[i] == want.valued, customer
        if want.m is None:
            assert math.isnan(got.m[i]), customer
        else:
            assert got.m[i] == pytest.approx(want.m, rel=1e-12), customer
        assert got.segments[i] == want.segment, customer
    # The customer who bought twice on one day is one purchase day (x = 0), not a repeat.
    assert any(s.x == 0 for s in expected.values())

    report = clv_json(
        plan,
        *(["--as-of", as_of] if as_of else []),
        *itertools.chain.from_iterable((f"--{name}", value) for name, value in filters.items()),
    )
    assert report["customers"] == len(expected)
    assert report["repeat_customers"] == sum(s.x > 0 for s in expected.values())
    assert report["as_of"] == moment.astimezone(UTC).isoformat()


def test_report_sums_predictions_per_segment(plan):
    """Expected purchases, P(alive), spend and CLV per customer from the reported fits, summed
    here over all customers and per segment (the segment of their latest kept event)."""
    rows = store(plan, simulated_rows(seed=11, customers=300))
    as_of = max(row.at for row in rows)
    report = clv_json(plan, "--horizon-weeks", "26")
    expected = reference_summaries(rows, as_of)
    fit, spend = report["bgnbd"], report["gamma_gamma"]
    p, q, gamma = spend["p"], spend["q"], spend["gamma"]

    totals: dict[str, list[float]] = defaultdict(lambda: [0, 0, 0.0, 0.0, 0.0, 0.0])
    for s in expected.values():
        purchases, alive = direct_prediction(
            fit["r"], fit["alpha"], fit["a"], fit["b"], s.x, s.t_x, s.T, 26
        )
        if s.valued and s.m and s.m > 0:
            per_purchase = (p * gamma + p * s.valued * s.m) / (p * s.valued + q - 1)
        else:
            per_purchase = p * gamma / (q - 1)
        for key in ("*", s.segment):
            t = totals[key]
            t[0] += 1
            t[1] += s.x > 0
            t[2] += purchases
            t[3] += alive
            t[4] += per_purchase
            t[5] += purchases * per_purchase

    def check(got, t):
        assert got["expected_purchases"] == pytest.approx(t[2], rel=1e-7)
        assert got["mean_p_alive"] == pytest.approx(t[3] / t[0], rel=1e-7)
        assert got["expected_spend_per_purchase"] == pytest.approx(t[4] / t[0], rel=1e-9)
        assert got["clv"] == pytest.approx(t[5], rel=1e-7)

    check(report, totals["*"])
    assert [s["segment"] for s in report["segments"]] == sorted(k for k in totals if k != "*")
    for segment in report["segments"]:
        t = totals[segment["segment"]]
        assert (segment["customers"], segment["repeat_customers"]) == (t[0], t[1])
        check(segment, t)


def test_fits_are_maxima_of_the_published_likelihoods(plan):
    rows = store(plan, simulated_rows(seed=3, customers=400))
    report = clv_json(plan)
    expected = reference_summaries(rows, max(row.at for row in rows))

    fit = report["bgnbd"]
    params = [fit["r"], fit["alpha"], fit["a"], fit["b"]]

    def ll(values):
        return sum(bgnbd_log_likelihood(*values, s) for s in expected.values())

    assert fit["log_likelihood"] == pytest.approx(ll(params), abs=1e-6)
    for i, step in itertools.product(range(4), (0.98, 1.02)):
        moved = list(params)
        moved[i] *= step
        assert ll(moved) < fit["log_likelihood"]

    spend = report["gamma_gamma"]
    spenders = [s for s in expected.values() if s.valued and s.m and s.m > 0]
    theta = [spend["p"], spend["q"], spend["gamma"]]

    def gg(values):
        return sum(gamma_gamma_log_likelihood(*values, s.valued, s.m) for s in spenders)

    assert spend["log_likelihood"] == pytest.approx(gg(theta), abs=1e-6)
    for i, step in itertools.product(range(3), (0.98, 1.02)):
        moved = list(theta)
        moved[i] *= step
        assert gg(moved) < spend["log_likelihood"]


# --- the model's predictions against direct integration -----------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        (0.2426, 4.4136, 0.7929, 2.4259),  # CDNOW: a < 1
        (1.7, 12.0, 2.5, 6.0),  # a > 1
        (0.5, 0.8, 0.3, 0.9),  # short alpha: customers seen for long
    ],
)
def test_conditional_expectation_and_p_alive(params):
    model = BgNbd(*params, log_likelihood=0.0)
    customers = [
        (0, 0, 38.86),
        (0, 0, 0.0),
        (2, 30.43, 38.86),
        (1, 1.0, 52.0),
        (7, 35.0, 39.0),
        (25, 60.0, 60.3),
        (60, 20.0, 100.0),
    ]
    for t in (1.0, 39.0, 104.0):
        x, t_x, T = (np.array(column, dtype=float) for column in zip(*customers, strict=True))
        got_purchases = model.expected_purchases(t, x, t_x, T)
        got_alive = model.p_alive(x, t_x, T)
        for i, (xi, txi, Ti) in enumerate(customers):
            purchases, alive = direct_prediction(*params, xi, txi, Ti, t)
            assert got_purchases[i] == pytest.approx(purchases, rel=1e-7, abs=1e-12), (
                xi,
                txi,
                Ti,
                t,
            )
            assert got_alive[i] == pytest.approx(alive, rel=1e-9, abs=1e-14), (xi, txi, Ti)
        # The sum the holdout uses is the sum of the customers'.
        assert model.total_expected_purchases([t], x, t_x, T)[0] == pytest.approx(
            got_purchases.sum()
        )


# --- the holdout --------------------------------------------------------------------------------


def test_holdout_week_by_week(plan):
    rows = generated_rows(seed=5, customers=40)
    # A customer whose first purchase is after as_of: not in the fit, not in the holdout.
    rows.append(Row("late", dt.datetime(2025, 11, 20, 9, tzinfo=UTC), value=Decimal(10)))
    # After as_of, but on its day: neither in the fit nor a holdout day.
    rows.append(Row("c001", dt.datetime(2025, 10, 1, 18, tzinfo=UTC), value=Decimal(10)))
    store(plan, rows)
    as_of = dt.datetime(2025, 10, 1, 12, tzinfo=UTC)
    end = max(row.at for row in rows)
    report = clv_json(plan, "--as-of", as_of.isoformat())
    fit = report["bgnbd"]
    expected = reference_summaries(rows, as_of)
    assert "late" not in expected

    span = (end.date() - as_of.date()).days
    weeks = math.ceil(span / 7)
    actual = [0] * weeks
    purchase_days = {
        (r.customer, r.at.date()) for r in rows if r.type == "purchase" and r.customer in expected
    }
    for _customer, day in purchase_days:
        offset = (day - as_of.date()).days
        if 0 < offset <= span:
            actual[(offset - 1) // 7] += 1
    cuts = [min(7 * k, span) / 7 for k in range(weeks + 1)]

    def cumulative(t):
        if t == 0:
            return 0.0
        return sum(
            direct_prediction(fit["r"], fit["alpha"], fit["a"], fit["b"], s.x, s.t_x, s.T, t)[0]
            for s in expected.values()
        )

    at_cuts = [cumulative(t) for t in cuts]
    holdout = report["holdout"]
    assert holdout["through"] == end.isoformat()
    assert len(holdout["weeks"]) == weeks
    for k, week in enumerate(holdout["weeks"]):
        assert week["week"] == k + 1
        assert week["start"] == (as_of.date() + dt.timedelta(days=7 * k + 1)).isoformat()
        assert week["actual"] == actual[k]
        assert week["predicted"] == pytest.approx(at_cuts[k + 1] - at_cuts[k], rel=1e-6, abs=1e-12)
    assert holdout["weeks"][-1]["end"] == end.date().isoformat()
    assert holdout["weeks"][-1]["partial"] == (span % 7 != 0)
    assert holdout["actual"] == sum(actual) > 0
    assert holdout["predicted"] == pytest.approx(at_cuts[-1], rel=1e-6)


def test_no_holdout_without_a_pinned_as_of_before_the_end(plan):
    rows = store(plan, generated_rows(seed=5, customers=10))
    end = max(row.at for row in rows)
    assert clv_json(plan)["holdout"] is None
    assert clv_json(plan, "--as-of", end.isoformat())["holdout"] is None
    assert clv_json(plan, "--as-of", "2030-01-01")["holdout"] is None


# --- edges and the command ----------------------------------------------------------------------


def test_no_purchases_no_fit(plan):
    store(plan, [Row("a", dt.datetime(2025, 3, 1, tzinfo=UTC), "visit")])
    report = clv_json(plan, "--event-type", "PURCHASE")
    assert report == {
        "as_of": "2025-03-01T00:00:00+00:00",
        "event_type": "purchase",
        "customers": 0,
        "repeat_customers": 0,
        "bgnbd": None,
        "gamma_gamma": None,
        "horizon_weeks": 52,
        "expected_purchases": 0.0,
        "mean_p_alive": None,
        "expected_spend_per_purchase": None,
        "clv": 0.0,
        "segments": [],
        "holdout": None,
    }


def test_an_empty_plan(plan):
    assert clv_json(plan)["as_of"] is None
    out = io.StringIO()
    call_command("clv", plan.slug, stdout=out)
    assert "No purchase events" in out.getvalue()


def test_one_time_buyers_and_no_values(plan):
    """Nobody came back, and no purchase has a value: BG/NBD still fits (r heads to zero, a
    and b stay where the data cannot move them), spend is unknown."""
    store(
        plan,
        [Row(f"c{n}", dt.datetime(2025, 1 + n % 12, 1 + n % 28, tzinfo=UTC)) for n in range(30)],
    )
    report = clv_json(plan)
    assert report["customers"] == 30 and report["repeat_customers"] == 0
    assert report["bgnbd"]["r"] < 1e-3
    assert report["gamma_gamma"] is None
    assert report["expected_spend_per_purchase"] is None and report["clv"] is None
    assert report["mean_p_alive"] == 1.0
    assert 0 <= report["expected_purchases"] < 1e-2


def test_command_errors_and_summary(plan, cdnow):
    with pytest.raises(CommandError, match="no plan"):
        call_command("clv", "nope", "--json")
    with pytest.raises(CommandError, match="ISO 8601"):
        call_command("clv", plan.slug, "--as-of", "last tuesday")
    with pytest.raises(CommandError):
        call_command("clv", plan.slug, "--horizon-weeks", "0")
    out = io.StringIO()
    call_command("clv", plan.slug, "--as-of", "1997-09-30T23:59:59", stdout=out)
    assert "2357 customers, 946 with repeat purchase days" in out.getvalue()
    assert "r 0.2426" in out.getvalue()


def test_expectation_is_continuous_at_a_one():
    """At a = 1 the closed form is 0/0; on either side it is not."""
    x, t_x, T = (
        np.array([0.0, 3.0, 40.0]),
        np.array([0.0, 20.0, 50.0]),
        np.array([10.0, 30.0, 52.0]),
    )
    at_one = BgNbd(0.4, 3.0, 1.0, 2.5, 0.0).expected_purchases(52, x, t_x, T)
    for a in (1 - 1e-4, 1 + 1e-4):
        near = BgNbd(0.4, 3.0, a, 2.5, 0.0).expected_purchases(52, x, t_x, T)
        assert at_one == pytest.approx(near, rel=1e-4)
    for i in range(3):
        assert at_one[i] == pytest.approx(
            direct_prediction(0.4, 3.0, 1.0, 2.5, x[i], t_x[i], T[i], 52)[0], rel=1e-9
        )


def test_a_web_process_loads_neither_numpy_nor_scipy():
    """The models load with the first fit: a process that serves every page (the Customers
    page shows reports that a worker fitted) starts without them."""
    code = (
        "import sys, django; django.setup(); "
        "from django.urls import get_resolver; get_resolver().url_patterns; "
        "print(sorted({name.partition('.')[0] for name in sys.modules} & {'numpy', 'scipy'}))"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"}
    ran = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parents[2],
        check=True,
    )
    assert ran.stdout.strip() == "[]"
