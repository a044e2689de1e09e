"""A plan's data source (issue #14): a facilitator points the plan at a table on Spark, the
check says what it found, every re-test runs there, and the token is never kept anywhere.

The tests marked `spark` use the Spark Connect server of conftest.py (skipped without pyspark
or Java; with REQUIRE_SERVICES=1 they fail instead); the others run anywhere.
"""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from insights.metrics.spark import SourceUnavailable
from insights.models import AssumptionRun, Event, PlanDataSource, PlanRetest
from insights.services.retests import retest_plan, run_plan_retest, start_plan_retest
from insights.services.sources import save_data_source
from planning.models import Activity, AssumptionStatus
from planning.planfile.exporting import export_plan
from tests.insights.retest_data import seed_plan
from tests.insights.spark_server import _free_port, write_parquet
from tests.insights.test_metrics import Row

pytestmark = pytest.mark.django_db
TOKEN_ENV = "SPARKSOURCE_TEST_TOKEN"
spark = pytest.mark.slow


def page(plan) -> str:
    return reverse("insights:data_source", args=[plan.slug])


def form(table: str, url: str, **extra) -> dict:
    return {"engine": "spark", "url": url, "table": table, "columns": "{}", **extra}


def events_as_parquet(plan, path, columns=None) -> str:
    rows = [
        Row(e.customer_id, e.occurred_at, e.event_type, e.value, e.segment, e.channel)
        for e in Event.objects.filter(plan=plan).order_by("id")
    ]
    return write_parquet(path, rows, columns)


def verdicts(runs) -> list[tuple]:
    return [(run.assumption_id, run.status, run.observed, run.n) for run in runs]


def token_nowhere(plan, token: str, *texts: str) -> None:
    """The token is in no row of the source, no activity, no plan file and no page."""
    stored = json.dumps(list(PlanDataSource.objects.filter(plan=plan).values()), default=str)
    activity = json.dumps(list(Activity.objects.filter(plan=plan).values()), default=str)
    exported = json.dumps(export_plan(plan), default=str)
    for text in (stored, activity, exported, *texts):
        assert token not in text


# --- On a real Spark Connect server --------------------------------------------------------------


@spark
def test_facilitator_sets_a_spark_source_and_sees_the_check(
    plan, facilitator, spark_server, tmp_path, monkeypatch
):
    seed_plan(plan)
    monkeypatch.setenv(TOKEN_ENV, spark_server.token)
    table = events_as_parquet(plan, tmp_path / "events", {"occurred_at": "ts"})
    url = f"sc://localhost:{spark_server.port}"

    response = facilitator.client.post(
        page(plan),
        form(table, url, columns='{"occurred_at": "ts"}', token_env=TOKEN_ENV),
    )

    assert response.status_code == 302
    source = PlanDataSource.objects.get(plan=plan)
    assert (source.engine, source.url, source.table) == ("spark", url, table)
    assert source.columns == {"occurred_at": "ts"}
    assert source.last_check_ok
    assert source.last_check_message == "Connected: 51 events, latest 1 Mar 2026."
    shown = facilitator.client.get(page(plan))
    assert shown.status_code == 200
    assert "Connected: 51 events, latest 1 Mar 2026." in shown.text
    activity = Activity.objects.get(plan=plan, item_type="data source")
    assert activity.after["token_env"] == TOKEN_ENV
    assert activity.actor == facilitator.user
    token_nowhere(plan, spark_server.token, shown.text, response.text)


@spark
def test_a_retest_on_spark_equals_the_same_events_imported(plan, spark_server, tmp_path):
    seeded = seed_plan(plan)
    imported = verdicts(retest_plan(plan))
    assert {status for _, status, _, _ in imported} == {
        AssumptionStatus.HOLDS,
        AssumptionStatus.BROKEN,
    }
    table = events_as_parquet(plan, tmp_path / "events", {"event_type": "kind"})
    # The events now live only on the cluster: an answer can only come from there.
    Event.objects.filter(plan=plan).delete()
    source = PlanDataSource(
        plan=plan,
        engine="spark",
        url=f"sc://localhost:{spark_server.port}",
        table=table,
        columns={"event_type": "kind"},
    )
    save_data_source(source)
    # Without a token variable the cluster refuses: set the token the server wants.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(TOKEN_ENV, spark_server.token)
        PlanDataSource.objects.filter(pk=source.pk).update(token_env=TOKEN_ENV)
        retest = start_plan_retest(plan)
        run_plan_retest(retest.pk)
    on_spark = verdicts(AssumptionRun.objects.filter(retest=retest).order_by("id"))
    assert on_spark == imported
    assert len(on_spark) == len(seeded.tested)


@spark
@pytest.mark.parametrize("where", ["cluster down", "wrong table"])
def test_an_unreadable_source_is_an_error_run_with_the_message(
    plan, cmo, spark_server, tmp_path, monkeypatch, where
):
    seeded = seed_plan(plan)
    monkeypatch.setenv(TOKEN_ENV, spark_server.token)
    url, table = f"sc://localhost:{spark_server.port}", "sales.missing_events"
    expected = f"The Spark cluster has no table {table}: check the table's name in the data source."
    if where == "cluster down":
        url, table = f"sc://127.0.0.1:{_free_port()}", events_as_parquet(plan, tmp_path / "e")
        expected = f"The Spark cluster at {url} does not answer"
    source = save_data_source(
        PlanDataSource(plan=plan, engine="spark", url=url, table=table, token_env=TOKEN_ENV)
    )
    assert not source.last_check_ok
    assert source.last_check_message.startswith(expected)

    retest = start_plan_retest(plan)
    run_plan_retest(retest.pk)

    retest.refresh_from_db()
    assert retest.status == PlanRetest.Status.DONE
    runs = list(AssumptionRun.objects.filter(retest=retest))
    assert len(runs) == len(seeded.tested)
    assert {run.status for run in runs} == {AssumptionStatus.ERROR}
    assert all(run.message.startswith(expected) for run in runs)
    for address in (
        reverse("insights:retest", args=[plan.slug, retest.pk]),
        reverse("insights:assumption", args=[plan.slug, seeded.repeat.pk]),
        page(plan),
    ):
        response = cmo.client.get(address)
        assert response.status_code == 200, address
    assert expected.split(":")[0] in cmo.client.get(page(plan)).text


@spark
def test_an_unreachable_cluster_is_retried_then_recorded(plan, spark_server, tmp_path):
    """The task's tries before the last hand the re-test back (its retry waits with backoff);
    the last one records `error` runs, so the re-test ends."""
    seed_plan(plan)
    url = f"sc://127.0.0.1:{_free_port()}"
    save_data_source(PlanDataSource(plan=plan, engine="spark", url=url, table="events"))
    retest = start_plan_retest(plan)

    with pytest.raises(SourceUnavailable):
        run_plan_retest(retest.pk, retry_unreachable=True)
    retest.refresh_from_db()
    assert retest.status == PlanRetest.Status.PENDING
    assert not retest.runs.exists()

    run_plan_retest(retest.pk, retry_unreachable=False)
    retest.refresh_from_db()
    assert retest.status == PlanRetest.Status.DONE
    assert {run.status for run in retest.runs.all()} == {AssumptionStatus.ERROR}


def test_the_retest_task_retries_an_unreachable_cluster_with_backoff():
    from insights import tasks

    task = tasks.run_plan_retest
    assert SourceUnavailable in task.autoretry_for
    assert task.retry_backoff and task.max_retries


# --- Anywhere: access, validation, the token's variable, the Customers page -----------------------


def test_members_read_the_source_and_only_a_facilitator_changes_it(
    plan, cmo, observer, outsider, facilitator
):
    url = "sc://spark.northwind.example:15002"
    for persona in (cmo, observer):
        shown = persona.client.get(page(plan))
        assert shown.status_code == 200
        assert "Only a facilitator can change the data source." in shown.text
        assert "disabled" in shown.text
        assert persona.client.post(page(plan), form("sales.events", url)).status_code == 403
    assert outsider.client.get(page(plan)).status_code == 404
    assert outsider.client.post(page(plan), form("sales.events", url)).status_code == 404
    assert facilitator.client.put(page(plan)).status_code == 405
    assert not PlanDataSource.objects.exists()
    assert not Activity.objects.filter(plan=plan, item_type="data source").exists()


def test_the_form_refuses_what_cannot_be_read(plan, facilitator):
    response = facilitator.client.post(
        page(plan),
        form(
            "events; DROP TABLE x",
            "http://spark:15002",
            columns='{"when": "ts"}',
            token_env="dapi-0123 secret",
        ),
    )
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert set(errors) == {"url", "table", "columns", "token_env"}
    assert "when: not a column of an event" in errors["columns"][0]
    assert "dapi-0123 secret" not in response.text  # not echoed back as a field value
    assert not PlanDataSource.objects.exists()


def test_back_to_imported_events_is_recorded_and_clears_the_check(plan, facilitator):
    PlanDataSource.objects.create(
        plan=plan, engine="spark", url="sc://x:15002", table="events", last_check_ok=True
    )
    version = type(plan).objects.get(pk=plan.pk).data_version
    response = facilitator.client.post(page(plan), {"engine": "imported", "columns": "{}"})
    assert response.status_code == 302
    source = PlanDataSource.objects.get(plan=plan)
    assert source.engine == "imported" and not source.last_check_message
    activity = Activity.objects.get(plan=plan, item_type="data source")
    assert (activity.before["engine"], activity.after["engine"]) == ("spark", "imported")
    # Histories of the cluster's data are not those of the imported events.
    assert type(plan).objects.get(pk=plan.pk).data_version == version + 1
    assert "The events are imported into Outside-In" in facilitator.client.get(page(plan)).text


def test_a_missing_token_variable_is_an_error_run_that_says_so(plan, monkeypatch):
    seeded = seed_plan(plan)
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    PlanDataSource.objects.create(
        plan=plan, engine="spark", url="sc://x:15002", table="events", token_env=TOKEN_ENV
    )
    runs = retest_plan(plan)
    assert len(runs) == len(seeded.tested)
    assert {run.status for run in runs} == {AssumptionStatus.ERROR}
    assert all(f"the variable {TOKEN_ENV} is not set" in run.message for run in runs)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sc://spark.example.com:15002", "sc://spark.example.com:15002/;token=t0k"),
        ("sc://spark.example.com:15002/", "sc://spark.example.com:15002/;token=t0k"),
        (
            "sc://spark.example.com:443/;use_ssl=true",
            "sc://spark.example.com:443/;use_ssl=true;token=t0k",
        ),
    ],
)
def test_the_token_joins_the_address_parameters(url, expected):
    from insights.metrics.spark import DataSource, connect_url

    assert connect_url(DataSource(url, "events", "t0k")) == expected
    assert connect_url(DataSource(url, "events")) == url


def test_the_imports_page_of_a_spark_plan_says_its_imports_are_not_used(plan, facilitator):
    url = reverse("insights:imports", args=[plan.slug])
    assert 'id="imports-unused"' not in facilitator.client.get(url).text
    PlanDataSource.objects.create(plan=plan, engine="spark", url="sc://x:15002", table="lake.ev")
    page = facilitator.client.get(url).text
    assert "read from <code>lake.ev</code> on its Spark cluster" in page
    assert "no figure uses it while the" in page
