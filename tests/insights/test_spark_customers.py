"""The Customers figures (DOMAIN §8), the board's stage strip, the test preview, the lifetime
value job (§9) and the blast radius (§10) of a plan whose events live on Spark: the same as from the same events imported,
read from the cluster once per freshness interval, and a cluster that does not answer said in
words, never a 500.

Each test first computes the figures from the events imported into the plan, then writes the same
events as Parquet, deletes them from the plan and points the plan at them on a real Spark Connect
server (conftest.py): an answer can then only come from the cluster.
"""

from __future__ import annotations

import math

import pytest
from django.core.cache import cache
from django.db import connection
from django.urls import reverse

from insights.metrics import spark as spark_engine
from insights.models import Event, PlanDataSource
from insights.services import clv_jobs, sources
from insights.services.customer_panels import board_strip
from insights.services.health import blast_radius
from lifecycle.models import EventMapping
from planning.models import Assumption, Plan, StrategicChoice
from tests.insights.events import store
from tests.insights.spark_server import _free_port, write_parquet
from tests.insights.test_metrics import generate
from tests.insights.test_metrics_speed import preview_form

pytestmark = [pytest.mark.django_db, pytest.mark.slow]
TOKEN_ENV = "SPARK_CUSTOMERS_TEST_TOKEN"
MAP = {"visit": "Explore", "signup": "Buy", "purchase": "Buy", "support_ticket": "Ask"}
# The figures a page shows, by the name of their context variable.
SHOWN = ("figures", "strip", "loyalty_rows", "funnels", "funnel_rows", "cohort_rows", "period_rows")
QUERIES = [
    {},
    {"period": "week", "segment": "smb"},
    {"channel": "web", "as_of": "2026-03-15", "by": "segment", "window": "45"},
]


@pytest.fixture
def events(plan):
    rows = store(plan, generate())
    stages = {stage.name: stage for stage in plan.stages.all()}
    for kind, name in MAP.items():
        EventMapping.objects.create(plan=plan, event_type=kind, stage=stages[name])
    return rows


def move_to_spark(plan, rows, server, tmp_path, monkeypatch, url: str = "") -> PlanDataSource:
    """The plan's events, now only on the cluster (in a table whose moment is called `ts`)."""
    table = write_parquet(tmp_path / "events", rows, {"occurred_at": "ts"})
    Event.objects.filter(plan=plan).delete()
    monkeypatch.setenv(TOKEN_ENV, server.token)
    # One freshness interval for the whole test: a test that crosses a quarter hour of the
    # clock would otherwise read the cluster again, as a person would then.
    monkeypatch.setattr(sources, "SPARK_FRESH_SECONDS", 10**9)
    return PlanDataSource.objects.create(
        plan=plan,
        engine="spark",
        url=url or f"sc://localhost:{server.port}",
        table=table,
        columns={"occurred_at": "ts"},
        token_env=TOKEN_ENV,
    )


def shown(persona, plan, query, *, lazily: bool = False) -> dict:
    """The figures of the page, as the browser gets them: on a Spark plan the page comes first
    and its figures with the request it then makes (`lazily`)."""
    url = reverse("insights:customers", args=[plan.slug])
    if lazily:
        response = persona.client.get(url, {**query, "part": "figures"}, HTTP_HX_REQUEST="true")
    else:
        response = persona.client.get(url, query)
    assert response.status_code == 200, response.text[:2000]
    return {name: response.context[name] for name in SHOWN}


def sessions_opened(monkeypatch) -> list[int]:
    opened: list[int] = []
    real = spark_engine._open_view

    def counting(source, plan_id):
        opened.append(plan_id)
        return real(source, plan_id)

    monkeypatch.setattr(spark_engine, "_open_view", counting)
    return opened


def test_the_customers_page_from_spark_equals_the_same_events_imported(
    plan, cmo, events, spark_server, tmp_path, monkeypatch
):
    imported = [shown(cmo, plan, query) for query in QUERIES]
    assert imported[0]["figures"].periods and imported[0]["funnels"][0].funnel.entrants
    assert sum(p.active for p in imported[1]["figures"].periods) > 0
    move_to_spark(plan, events, spark_server, tmp_path, monkeypatch)
    url = reverse("insights:customers", args=[plan.slug])
    # The page comes at once (the filters' choices are read, no figure), asking for its figures.
    page = cmo.client.get(url)
    assert page.status_code == 200 and page.context["figures_pending"]
    assert "figures" not in page.context
    assert f'hx-get="{url}?part=figures"' in page.text
    assert "Reading the figures from the plan's Spark cluster" in page.text
    opened = sessions_opened(monkeypatch)

    on_spark = [shown(cmo, plan, query, lazily=True) for query in QUERIES]

    for query, spark_page, database_page in zip(QUERIES, on_spark, imported, strict=True):
        for name in SHOWN:
            assert spark_page[name] == database_page[name], (query, name)
    # One session per look, whatever the number of statements.
    assert opened == [plan.pk] * len(QUERIES)
    # Looked at again within the interval: read from the cache, not from the cluster.
    again = shown(cmo, plan, QUERIES[0], lazily=True)
    assert again == on_spark[0]
    assert len(opened) == len(QUERIES)
    figures = cmo.client.get(url, {"part": "figures"}, HTTP_HX_REQUEST="true").text
    assert 'id="customer-figures"' in figures
    assert "on the plan's" in figures and "Spark cluster" in figures
    assert "every 15 minutes" in figures
    # "Read again now": the next look reads the cluster again, the same filters kept.
    again_url = reverse("insights:read_again", args=[plan.slug])
    asked = cmo.client.post(again_url, {"query": "period=week&segment=smb"})
    assert asked.status_code == 302 and asked["Location"] == f"{url}?period=week&segment=smb"
    assert shown(cmo, plan, QUERIES[0], lazily=True) == on_spark[0]
    assert len(opened) == len(QUERIES) + 1


def test_the_board_strip_and_the_preview_from_spark(
    plan, facilitator, events, spark_server, tmp_path, monkeypatch
):
    strip = board_strip(plan)
    assert strip.last is not None and any(tile.reached for tile in strip.tiles)
    preview_url = reverse("insights:test_preview", args=[plan.slug])
    test = preview_form(metric="repeat_rate", comparator=">=", threshold="30")
    test |= {"param_event_type": "purchase", "param_within_days": "30"}
    imported = facilitator.client.post(preview_url, test)
    assert "n = " in imported.text
    move_to_spark(plan, events, spark_server, tmp_path, monkeypatch)
    plan = Plan.objects.get(pk=plan.pk)  # the board reads the plan anew on each request

    assert board_strip(plan) == strip
    # The board does not wait for the cluster: it shows the strip being read, and asks for it.
    cache.clear()
    board = facilitator.client.get(reverse("planning:board", args=[plan.slug]))
    strip_url = reverse("insights:stage_strip", args=[plan.slug])
    assert f'hx-get="{strip_url}"' in board.text
    assert "Reading the customers of each stage from the plan's Spark cluster" in board.text
    assert facilitator.client.get(strip_url).context["strip"] == strip
    board = facilitator.client.get(reverse("planning:board", args=[plan.slug]))
    assert f'hx-get="{strip_url}"' not in board.text  # read: kept for the next looks
    on_spark = facilitator.client.post(preview_url, test)
    assert on_spark.context["outcome"] == imported.context["outcome"]
    assert on_spark.context["as_of"] == imported.context["as_of"]


def test_the_lifetime_value_from_spark_equals_the_same_events_imported(
    plan, events, spark_server, tmp_path, monkeypatch
):
    request = clv_jobs.ValueRequest()
    clv_jobs.compute_customer_value(plan.pk, plan.data_version, request.as_json())
    imported = clv_jobs.customer_value(plan, request)
    assert imported.status == clv_jobs.Status.READY and imported.report["customers"] > 100
    move_to_spark(plan, events, spark_server, tmp_path, monkeypatch)
    plan = Plan.objects.get(pk=plan.pk)

    clv_jobs.compute_customer_value(plan.pk, plan.data_version, request.as_json())
    on_spark = clv_jobs.customer_value(plan, request)

    assert on_spark.status == clv_jobs.Status.READY, on_spark.message
    if connection.vendor == "postgresql":
        assert on_spark.report == imported.report
        assert on_spark.p_alive_histogram == imported.p_alive_histogram
    else:
        # SQLite keeps the values in floating point: its sums differ from Spark's exact
        # decimals in the last bits, and the fits then stop within their own tolerance.
        assert close(on_spark.report, imported.report, 1e-4)
        assert on_spark.p_alive_histogram == imported.p_alive_histogram


def close(a, b, tolerance: float) -> bool:
    """Equal, but numbers to a relative tolerance (nested dicts and lists)."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k], tolerance) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(close(x, y, tolerance) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=tolerance)
    return a == b


def test_a_cluster_that_does_not_answer_is_said_in_words(
    plan, cmo, events, spark_server, tmp_path, monkeypatch
):
    down = f"sc://localhost:{_free_port()}"
    move_to_spark(plan, events, spark_server, tmp_path, monkeypatch, url=down)
    cache.clear()

    page = cmo.client.get(reverse("insights:customers", args=[plan.slug]))
    assert page.status_code == 503
    assert f"The Spark cluster at {down} does not answer" in page.text
    assert reverse("insights:data_source", args=[plan.slug]) in page.text

    board = cmo.client.get(reverse("planning:board", args=[plan.slug]))
    assert board.status_code == 200
    strip = cmo.client.get(reverse("insights:stage_strip", args=[plan.slug]))
    assert f"The Spark cluster at {down} does not answer" in strip.text

    request = clv_jobs.ValueRequest()
    clv_jobs.compute_customer_value(plan.pk, plan.data_version, request.as_json())
    state = clv_jobs.customer_value(plan, request)
    assert state.status == clv_jobs.Status.FAILED
    assert f"The Spark cluster at {down} does not answer" in state.message


def test_the_blast_radius_from_spark_equals_the_same_events_imported(
    plan, events, spark_server, tmp_path, monkeypatch
):
    choice = StrategicChoice.objects.create(plan=plan, title="Win back lapsed buyers")
    choice.stages.set(plan.stages.filter(name__in=["Explore", "Buy", "Use"]))
    broken = Assumption.objects.create(
        choice=choice, statement="Lapsed buyers come back", status="broken"
    )
    imported = blast_radius(Assumption.objects.select_related("choice__plan").get(pk=broken.pk))
    assert imported.customers and all(s.customers is not None for s in imported.stages)
    move_to_spark(plan, events, spark_server, tmp_path, monkeypatch)

    on_spark = blast_radius(Assumption.objects.select_related("choice__plan").get(pk=broken.pk))

    assert (on_spark.period, on_spark.customers) == (imported.period, imported.customers)
    assert on_spark.stages == imported.stages


def test_the_event_map_lists_the_types_on_the_cluster(
    plan, facilitator, events, spark_server, tmp_path, monkeypatch
):
    url = reverse("insights:event_map", args=[plan.slug])
    imported = facilitator.client.get(url)
    move_to_spark(plan, events, spark_server, tmp_path, monkeypatch)

    on_spark = facilitator.client.get(url)

    rows = [(row["event_type"], row["seen"], row["unmapped"]) for row in on_spark.context["rows"]]
    assert rows == [
        (row["event_type"], row["seen"], row["unmapped"]) for row in imported.context["rows"]
    ]
    assert {"login", "survey"} <= {event_type for event_type, _, unmapped in rows if unmapped}
    PlanDataSource.objects.filter(plan=plan).update(url=f"sc://localhost:{_free_port()}")
    cache.clear()
    down = facilitator.client.get(url)
    assert down.status_code == 200
    assert "The event types in the data cannot be read right now" in down.text
    assert sorted(row["event_type"] for row in down.context["rows"]) == sorted(MAP)


def test_only_members_who_edit_may_ask_to_read_again(plan, observer, cmo):
    url = reverse("insights:read_again", args=[plan.slug])
    assert observer.client.post(url).status_code == 403
    assert cmo.client.get(url).status_code == 405
    assert cmo.client.post(url).status_code == 302
