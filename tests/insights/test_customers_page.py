"""The Customers page (DOMAIN §8, §9): what it shows is what the services compute, its filters
are in the URL and refused in words when wrong, members only see it, and its statements do
not grow with the number of periods.

The figures themselves are checked against plain-Python references elsewhere
(test_customers.py, test_clv.py, test_metrics.py); here the page's numbers are read back from
its HTML and compared with `compute_customers` and the CLV report, and the figures the page
computes itself (the stage strip's change and noise, loyalty through time) with references
written here from DOMAIN §5 and §8.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlsplit

import pytest
import time_machine
from django.db import connection
from django.db.models import F
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from insights.clv import customer_lifetime_value
from insights.metrics import measure
from insights.models import Event
from insights.services import clv_jobs
from insights.services.customer_panels import board_strip
from insights.services.customers import compute_customers
from lifecycle.models import EventMapping
from planning.models import Assumption, Metric, Plan, StrategicChoice
from planning.views.editing import prefilled
from tests.insights.test_metrics import (
    Row,
    View,
    add,
    generate,
    ref_churn,
    ref_nps,
    ref_repeat,
    share,
    store,
)

pytestmark = pytest.mark.django_db

UTC = dt.UTC
EVENT_MAP = {
    "visit": "Explore",
    "signup": "Buy",
    "purchase": "Buy",
    "login": "Use",
    "survey": "Engage",
}


# --- reading the page ----------------------------------------------------------------------------


class Tables(HTMLParser):
    """Every table with an id, as rows of cell texts; and every element's data-* attributes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: dict[str, list[list[str]]] = {}
        self.data: list[tuple[str, dict[str, str]]] = []
        self._table: str | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attributes = {k: v or "" for k, v in attrs}
        if any(k.startswith("data-") for k in attributes):
            self.data.append((tag, attributes))
        if tag == "table" and attributes.get("id"):
            self._table = attributes["id"]
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None and self._table:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def read(response) -> Tables:
    parser = Tables()
    parser.feed(response.content.decode())
    return parser


def number(text: str) -> int:
    return int(text.replace(",", ""))


def pct(value: float | None, places: int = 1) -> str:
    return "—" if value is None else f"{100 * value:.{places}f}%"


def url(plan, **query) -> str:
    base = reverse("insights:customers", args=[plan.slug])
    if not query:
        return base
    return base + "?" + "&".join(f"{k}={v}" for k, v in query.items())


# --- data ----------------------------------------------------------------------------------------


def map_events(plan) -> None:
    stages = {s.name: s for s in plan.stages.all()}
    EventMapping.objects.bulk_create(
        EventMapping(plan=plan, event_type=t, stage=stages[s]) for t, s in EVENT_MAP.items()
    )


@pytest.fixture
def rows(plan) -> list[Row]:
    """A year of 320 generated customers (test_metrics' data: segments, channels, zones)."""
    map_events(plan)
    return store(plan, generate())


@pytest.fixture(autouse=True)
def _own_cache(own_cache):
    """Each test reads and writes the cache under its own prefix."""


# --- the figures on the page -----------------------------------------------------------------------


def test_the_page_shows_the_figures_compute_customers_gives(plan, cmo, rows):
    response = cmo.client.get(url(plan))
    assert response.status_code == 200
    page = read(response)
    figures = compute_customers(plan)

    # Composition, newest first, every period including the partial one.
    table = page.tables["composition-table"][1:]
    assert len(table) == len(figures.periods) > 6
    for row, period in zip(table, reversed(figures.periods), strict=True):
        assert [number(v) for v in row[1:]] == [
            period.active,
            period.new,
            period.returning,
            period.resurrecting,
            period.dormant,
        ]
        assert row[0].endswith("(so far)") == period.partial

    # Cohort retention: size and every cell's share and interval.
    cohorts = page.tables["cohort-table"][1:]
    assert len(cohorts) == len(figures.cohorts)
    for row, cohort in zip(cohorts, reversed(figures.cohorts), strict=True):
        assert number(row[1]) == cohort.size
        for text, cell in zip(row[2:], cohort.retention, strict=False):
            retained = cell.retained
            assert text.startswith(pct(retained.share, 0)), (text, cell)
            assert f"{pct(retained.ci_low, 0)}–{pct(retained.ci_high, 0)}" in text

    # The funnel of all customers: entrants and each step's customers and share.
    funnel_rows = page.tables["funnel-table"]
    assert f"({figures.funnel.entrants:,} entrants)" in funnel_rows[0][1]
    for row, step in zip(funnel_rows[1:], figures.funnel.steps, strict=True):
        assert row[0] == step.stage
        assert row[1].startswith(f"{step.reached.customers:,} · {pct(step.reached.share)}")

    # The strip: the last complete period's reach of every mapped stage.
    last = [p for p in figures.periods if not p.partial][-1]
    tiles = {a["data-stage"] for tag, a in page.data if "data-stage" in a}
    assert tiles == {s.name for s in plan.stages.all()}
    html = response.content.decode()
    for name, reach in last.stage_reach.items():
        if name in EVENT_MAP.values():
            tile = re.search(rf'data-stage="{name}">(.*?)</li>', html, re.S).group(1)
            assert f"<strong data-reached>{reach.customers:,}</strong>" in tile
            assert f"{pct(reach.share)} of active" in tile


def test_loyalty_at_as_of_equals_a_reference_from_domain(plan, cmo, rows):
    """The last point of each loyalty figure is its §5 metric as of the latest event, with the
    filters: repeat within 30 days of the last 90 days' new customers, churn after 90 quiet
    days, the NPS of the last 90 days' surveys."""
    as_of = max(r.at for r in rows)
    for query, segment in [({}, None), ({"segment": "smb"}, "smb")]:
        response = cmo.client.get(url(plan, **query))
        assert response.status_code == 200
        latest = {a["data-metric"]: None for tag, a in read(response).data if "data-metric" in a}
        html = response.content.decode()
        for metric in latest:
            card = re.search(rf'data-metric="{metric}"(.*?)</article>', html, re.S).group(1)
            found = re.search(r"<strong data-latest-value>([^<]+)</strong>", card)
            latest[metric] = found.group(1) if found else None
        windowed = View(as_of, segment=segment, window_days=90)
        everyone = View(as_of, segment=segment)
        repeat = ref_repeat(rows, windowed, "purchase", 30)[0]
        churn = ref_churn(rows, everyone, 90)[0]
        nps = ref_nps(rows, windowed)[0]
        assert latest == {
            "repeat_rate": pct(repeat),
            "churn_rate": pct(churn),
            "nps": f"{nps:,.0f}",
        }


def test_the_strip_says_a_change_is_beyond_noise_only_when_the_intervals_part(plan, cmo):
    """Two complete months and a partial one. Buy reaches 20/40 then 36/40 customers (Wilson
    intervals apart: beyond noise, up); Use 10/40 then 12/40 (they overlap: within noise)."""
    map_events(plan)
    specs = []
    for month, buyers, users in [(1, 20, 10), (2, 36, 12)]:
        for n in range(40):
            customer = f"m{month}-{n}"
            specs.append((customer, f"2026-0{month}-10T10:00", "visit"))
            if n < buyers:
                specs.append((customer, f"2026-0{month}-11T10:00", "purchase"))
            if n < users:
                specs.append((customer, f"2026-0{month}-12T10:00", "login"))
    specs.append(("late", "2026-03-02T10:00", "visit"))
    add(plan, *specs)
    html = cmo.client.get(url(plan)).content.decode()

    def tile(name: str) -> str:
        found = re.search(rf'data-stage="{name}">(.*?)</li>', html, re.S)
        assert found, name
        return found.group(1)

    for name, before, now, verdict in [("Buy", 20, 36, "up"), ("Use", 10, 12, "steady")]:
        (_, _, low_before, high_before) = share(before, 40)
        (_, _, low_now, high_now) = share(now, 40)
        apart = low_now > high_before or high_now < low_before
        assert apart == (verdict != "steady")
        text = tile(name)
        assert f'data-verdict="{verdict}"' in text
        assert ("beyond noise" in text) == apart and ("within noise" in text) != apart
        assert f"+{now - before}" in text
        assert f"(+{100 * (now - before) / 40:.1f} pts)" in text
    assert "Reached in Feb 2026, against Jan 2026." in html


def test_filters_in_the_url_change_the_figures(plan, cmo, rows):
    as_of = dt.datetime(2026, 3, 31, 23, 59, 59, 999999, tzinfo=UTC)
    response = cmo.client.get(url(plan, period="week", as_of="2026-03-31", channel="web"))
    assert response.status_code == 200
    figures = compute_customers(plan, period="week", as_of=as_of, channel="web")
    table = read(response).tables["composition-table"][1:]
    assert [number(r[1]) for r in table] == [p.active for p in reversed(figures.periods)]
    assert table[0][0].startswith("week of 30 Mar 2026")  # the ISO week holding 31 March
    assert "channel <strong>web</strong>" in response.content.decode()

    # The funnel's window and entry range, and its side-by-side segments (the largest first).
    query = {"window": 14, "entry_from": "2025-09", "entry_to": "2026-01", "by": "segment"}
    response = cmo.client.get(url(plan, **query))
    funnel = compute_customers(
        plan, window_days=14, entry_from=dt.date(2025, 9, 1), entry_to=dt.date(2026, 1, 1)
    ).funnel
    header = read(response).tables["funnel-table"][0]
    assert f"({funnel.entrants:,} entrants)" in header[1]
    segments = [h.split(" (")[0] for h in header[2:]]
    assert segments and set(segments) <= {"smb", "enterprise", "consumer"}
    for name, cell in zip(segments, header[2:], strict=True):
        alone = compute_customers(
            plan,
            segment=name,
            window_days=14,
            entry_from=dt.date(2025, 9, 1),
            entry_to=dt.date(2026, 1, 1),
        ).funnel
        assert f"({alone.entrants:,} entrants)" in cell
    html = response.content.decode()
    assert "came from the month of Sep 2025 to that of Jan 2026" in html
    assert "within 14 days of entering" in html


@pytest.mark.parametrize(
    ("query", "said"),
    [
        ({"period": "year"}, "“year” is not a period: choose month or week."),
        ({"as_of": "31/03/2026"}, "Give the date as YYYY-MM-DD"),
        ({"segment": "martians"}, "There is no segment “martians” in this plan&#x27;s data."),
        ({"channel": "fax"}, "There is no channel “fax”"),
        ({"event_type": "nothing"}, "There is no event type “nothing”"),
        ({"window": "0"}, "The funnel window is at least 1 day."),
        ({"window": "ten"}, "The funnel window is a whole number of days."),
        ({"entry_from": "2026-13"}, "“2026-13” is not a month (YYYY-MM) or a date"),
        ({"entry_from": "2026-05", "entry_to": "2026-02"}, "ends before it starts"),
        ({"horizon": "9999"}, "The horizon is at most 520 weeks"),
        ({"as_of": "2026-06-02"}, "The data ends on 1 Jun 2026: choose that day or an earlier"),
        ({"as_of": "9999-12-31"}, "The data ends on 1 Jun 2026"),
        ({"as_of": "0001-01-01"}, None),  # before every event: no figures, no error
    ],
)
def test_bad_filters_are_refused_in_words_never_a_500(plan, cmo, rows, query, said):
    response = cmo.client.get(url(plan, **query))
    if said is None:
        assert response.status_code == 200
        assert "No events up to" in response.content.decode()
        return
    assert response.status_code == 400
    assert said in response.content.decode()
    assert "composition-table" not in response.content.decode()


def test_members_only_observers_read_and_make_no_assumptions(plan, cmo, observer, outsider, rows):
    assert outsider.client.get(url(plan)).status_code == 404
    assert cmo.client.post(url(plan)).status_code == 405
    seen = observer.client.get(url(plan))
    assert seen.status_code == 200
    assert "composition-table" in seen.content.decode()
    assert "Make this an assumption" not in seen.content.decode()
    assert "Make this an assumption" in cmo.client.get(url(plan)).content.decode()
    picker = reverse("insights:customers_assumption", args=[plan.slug])
    assert observer.client.get(picker).status_code == 403
    assert outsider.client.get(picker).status_code == 404


def test_the_plan_tab_is_customers_with_imports_and_the_event_map_under_it(plan, cmo):
    for name in ("insights:customers", "insights:imports", "insights:event_map"):
        html = cmo.client.get(reverse(name, args=[plan.slug])).content.decode()
        assert re.search(r'href="[^"]+/customers/" aria-current="page">Customers</a>', html)
        assert 'aria-label="Customers"' in html  # the sub-navigation
        assert "Customer data</a>" not in html
    empty = cmo.client.get(url(plan)).content.decode()
    assert "No customer data yet." in empty


# --- statements -----------------------------------------------------------------------------------


def _queries(client, path: str) -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(path).status_code == 200
    return [q["sql"] for q in captured.captured_queries]


def test_the_statements_do_not_grow_with_the_periods(plan, cmo, django_assert_num_queries):
    """Three months of data, then two years (by month and by week): the same statements."""
    map_events(plan)
    start = dt.datetime(2024, 1, 1, tzinfo=UTC)

    def events(days: int) -> list:
        return [
            (
                f"c{(d + n) % 40}",
                start + dt.timedelta(days=d, hours=n),
                kind,
                8 if kind == "survey" else None,
                ["a", "b"][n % 2],
                ["web", "app"][n % 2],
            )
            for d in range(0, days, 3)
            for n, kind in enumerate(["visit", "purchase", "login", "survey"])
        ]

    add(plan, *events(90))
    cmo.client.get(url(plan))  # the filters' choices, once per data version
    short = _queries(cmo.client, url(plan))
    Event.objects.filter(plan=plan).delete()
    add(plan, *events(730))
    Plan.objects.filter(pk=plan.pk).update(data_version=F("data_version") + 1)
    cmo.client.get(url(plan))
    long = _queries(cmo.client, url(plan))
    weeks = _queries(cmo.client, url(plan, period="week"))
    assert len(short) == len(long) == len(weeks)
    # Session, user, membership and plan; stages ×2, as_of, periods, cohorts, funnel; first
    # event and the three loyalty metrics; one funnel per channel shown (two here); the running
    # workshop session (for "Back to the room"); whether the plan's events live on Spark.
    with django_assert_num_queries(17):
        cmo.client.get(url(plan, period="week"))


# --- lifetime value ---------------------------------------------------------------------------------


def test_lifetime_value_is_fitted_in_the_background_then_shown(
    plan, cmo, rows, tasks_inline, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        first = cmo.client.get(url(plan))
    assert "Fitting the model…" in first.content.decode()
    assert 'hx-get="/plans/fy2027/customers/?part=value"' in first.content.decode()
    assert len(callbacks) == 1  # one job, however many look
    with django_capture_on_commit_callbacks(execute=False) as again:
        polled = cmo.client.get(url(plan, part="value"), headers={"HX-Request": "true"})
    assert again == [] and "<html" not in polled.content.decode()
    assert "Fitting the model…" in polled.content.decode()

    callbacks[0]()  # the worker (eager here) fits the models
    done = cmo.client.get(url(plan, part="value"), headers={"HX-Request": "true"})
    html = done.content.decode()
    assert "<html" not in html and "hx-get" not in html  # ready: the polling stops
    report = customer_lifetime_value(plan.pk)
    assert f'data-value="expected_purchases">{report["expected_purchases"]:,.0f}<' in html
    assert f'data-value="clv">{report["clv"]:,.0f}<' in html
    assert f'data-value="p_alive">{100 * report["mean_p_alive"]:.0f}%<' in html
    page = read(done)
    segments = {row[0]: row for row in page.tables["value-table"][1:]}
    for s in report["segments"]:
        row = segments[s["segment"] or "(none)"]
        assert number(row[1]) == s["customers"] and number(row[6]) == round(s["clv"])
    # The P(alive) histogram counts every fitted customer.
    state = clv_jobs.customer_value(plan, clv_jobs.ValueRequest())
    assert sum(b["customers"] for b in state.p_alive_histogram) == report["customers"]
    assert "holdout-table" not in html  # not pinned: no holdout


def test_a_pinned_as_of_shows_the_models_holdout_test(
    plan, cmo, rows, tasks_inline, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        cmo.client.get(url(plan, as_of="2026-03-31"))
    html = cmo.client.get(url(plan, as_of="2026-03-31")).content.decode()
    report = customer_lifetime_value(
        plan.pk, as_of=dt.datetime(2026, 3, 31, 23, 59, 59, 999999, tzinfo=UTC)
    )
    weeks = read(cmo.client.get(url(plan, as_of="2026-03-31"))).tables["holdout-table"][1:]
    assert [number(w[3]) for w in weeks] == [w["actual"] for w in report["holdout"]["weeks"]]
    assert f"customers made {report['holdout']['actual']:,}" in html


def test_a_new_import_asks_for_a_new_fit(plan, cmo, rows, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        cmo.client.get(url(plan))
        cmo.client.get(url(plan))
    assert len(callbacks) == 1
    plan.data_version += 1
    plan.save(update_fields=["data_version"])
    with django_capture_on_commit_callbacks() as callbacks:
        cmo.client.get(url(plan))
    assert len(callbacks) == 1


def test_a_lost_fit_is_asked_for_again_and_a_fit_runs_once(
    plan, rows, django_capture_on_commit_callbacks, django_assert_num_queries
):
    request = clv_jobs.ValueRequest()
    start = dt.datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    with time_machine.travel(start, tick=False):
        with django_capture_on_commit_callbacks() as sent:
            assert clv_jobs.customer_value(plan, request).status == "queued"
            assert clv_jobs.customer_value(plan, request).status == "queued"
        assert len(sent) == 1
    with time_machine.travel(start + dt.timedelta(minutes=2), tick=False):
        state = clv_jobs.customer_value(plan, request)
        assert state.slow and not state.stalled  # said on the page, still waited for
    with time_machine.travel(start + clv_jobs.STALE + dt.timedelta(seconds=1), tick=False):
        with django_capture_on_commit_callbacks() as sent:
            clv_jobs.customer_value(plan, request)  # the job was lost: sent again
        assert len(sent) == 1

    # The worker: an older data version's job does nothing; the current one fits once.
    clv_jobs.compute_customer_value(plan.pk, plan.data_version - 1, request.as_json())
    assert clv_jobs.customer_value(plan, request).status == "queued"
    clv_jobs.compute_customer_value(plan.pk, plan.data_version, request.as_json())
    state = clv_jobs.customer_value(plan, request)
    assert state.status == "ready" and state.report == customer_lifetime_value(plan.pk)
    with django_assert_num_queries(1):  # delivered twice: the plan is read, nothing fitted
        clv_jobs.compute_customer_value(plan.pk, plan.data_version, request.as_json())


# --- the board's strip --------------------------------------------------------------------------------


def test_the_board_is_headed_by_the_same_strip_cached_per_data_version(plan, cmo, rows):
    board = reverse("planning:board", args=[plan.slug])
    first = _queries(cmo.client, board)
    cached = _queries(cmo.client, board)
    assert len(first) - len(cached) == 2  # as_of and the period figures, once
    html = cmo.client.get(board).content.decode()
    strip = board_strip(plan)
    assert strip.tiles and strip.last is not None
    for tile in strip.tiles:
        if tile.mapped:
            assert f"<strong data-reached>{tile.reached.customers:,}</strong>" in html
    page = cmo.client.get(url(plan)).content.decode()
    for tile in strip.tiles:
        if tile.mapped:
            assert f"<strong data-reached>{tile.reached.customers:,}</strong>" in page
    # A change of the event map is a new strip, without a new data version.
    EventMapping.objects.filter(plan=plan, event_type="login").delete()
    assert next(t for t in board_strip(plan).tiles if t.stage == "Use").mapped is False


# --- "Make this an assumption" --------------------------------------------------------------------


def _assumption_link(html: str, key: str) -> str:
    found = re.search(rf'href="([^"]+)" data-assumption-for="{key}"', html)
    assert found, key
    return found.group(1).replace("&amp;", "&")


def test_a_loyalty_figure_becomes_a_tested_assumption_of_the_same_value(plan, cmo, rows):
    choice = StrategicChoice.objects.create(plan=plan, title="Launch a loyalty subscription")
    StrategicChoice.objects.create(plan=plan, title="Retire the catalogue", position=1)
    html = cmo.client.get(url(plan)).content.decode()
    link = _assumption_link(html, "repeat")
    shown = re.search(
        r'data-metric="repeat_rate".*?<strong data-latest-value>([^<]+)</strong>', html, re.S
    ).group(1)

    # The picker asks which choice the assumption supports.
    picker = cmo.client.get(link)
    assert picker.status_code == 200
    assert "Which strategic choice rests on it?" in picker.content.decode()
    query = parse_qs(urlsplit(link).query)
    wrong = cmo.client.get(link + "&choice=999999")
    assert wrong.status_code == 400
    onward = cmo.client.get(link + f"&choice={choice.pk}")
    assert onward.status_code == 302
    form_url = onward["Location"]
    assert form_url.startswith(reverse("planning:assumption_new", args=[plan.slug, choice.pk]))

    # The board's form, filled in: metric, parameters, window, threshold in percent.
    form = cmo.client.get(form_url).content.decode()
    assert 'value="repeat_rate" selected' in form
    assert re.search(r'name="param_within_days" value="30"', form)
    assert re.search(r'name="window_days" value="90"', form)
    threshold = float(query["threshold"][0])
    assert f'name="threshold" value="{100 * threshold:g}"' in form
    assert shown == f"{100 * threshold:.1f}%"

    # Saved as the form would send it, the test measures the figure shown.
    created = cmo.client.post(
        form_url.split("?")[0],
        {
            "statement": query["statement"][0],
            "importance": 4,
            "evidence": 2,
            "metric": "repeat_rate",
            "param_event_type": "purchase",
            "param_within_days": 30,
            "comparator": ">=",
            "threshold": f"{100 * threshold:g}",
            "min_sample": 30,
            "window_days": 90,
        },
    )
    assert created.status_code == 302, created.content.decode()[:2000]
    assumption = Assumption.objects.get(choice=choice)
    assert assumption.metric == Metric.REPEAT_RATE and assumption.window_days == 90
    assert assumption.params == {"event_type": "purchase", "within_days": 30}
    as_of = max(r.at for r in rows)
    value = measure(assumption, plan.pk, as_of).value
    assert assumption.format_value(value) == shown
    assert math.isclose(value, ref_repeat(rows, View(as_of, window_days=90), "purchase", 30)[0])


def test_without_choices_the_picker_says_to_add_one(plan, cmo, rows):
    html = cmo.client.get(url(plan)).content.decode()
    picker = cmo.client.get(_assumption_link(html, "nps")).content.decode()
    assert "this plan has none yet" in picker


def test_the_new_assumption_form_takes_only_sane_initial_values():
    from planning.forms import AssumptionForm

    query = {
        "statement": "NPS holds",
        "metric": "nps",
        "threshold": "nan",
        "threshold_high": "abc",
        "owner": "7",
        "param_event_type": "survey",
        "window_days": "90",
        "unknown": "x",
    }
    assert prefilled(query, AssumptionForm) == {
        "statement": "NPS holds",
        "metric": "nps",
        "param_event_type": "survey",
        "window_days": "90",
    }
