"""The data source in the plan file (DOMAIN §6, issue #14): exported without its token, imported
with the data source form's rules, checked on import as on its page, and a file that tries to
hold a token refused with nothing written.

A Spark source whose cluster does not answer is kept (shown as failing), so most tests need no
cluster: they point at a port where nothing listens. One test checks a real Spark Connect server.
"""

from __future__ import annotations

import copy

import pytest

from insights.models import PlanDataSource
from insights.services import sources
from planning.models import Activity
from planning.planfile import PlanFileError, export_plan, import_plan
from tests.insights.events import store
from tests.insights.spark_server import _free_port
from tests.insights.test_data_source import events_as_parquet
from tests.insights.test_metrics import Row, generate

pytestmark = pytest.mark.django_db
TOKEN_ENV = "PLANFILE_SPARK_TOKEN"


def spark_file(url: str, **extra) -> dict:
    return {
        "name": "Lakehouse plan",
        "slug": "lakehouse",
        "data_source": {
            "engine": "spark",
            "url": url,
            "table": "lake.sales.events",
            "columns": {"occurred_at": "ts"},
            "token_env": TOKEN_ENV,
            **extra,
        },
    }


@pytest.fixture
def checks(monkeypatch) -> list[str]:
    """Each connection check the import makes, by table."""
    made: list[str] = []
    real = sources.check_data_source

    def counting(record):
        made.append(record.table)
        return real(record)

    monkeypatch.setattr(sources, "check_data_source", counting)
    return made


def test_a_file_sets_the_source_checks_it_and_exports_it_again(db, checks):
    down = f"sc://localhost:{_free_port()}"
    data = spark_file(down)

    plan, created = import_plan(copy.deepcopy(data))

    assert created
    source = PlanDataSource.objects.get(plan=plan)
    assert (source.engine, source.url, source.table) == ("spark", down, "lake.sales.events")
    assert (source.columns, source.token_env) == ({"occurred_at": "ts"}, TOKEN_ENV)
    # Checked as on its page, and kept although the cluster did not answer.
    assert checks == ["lake.sales.events"]
    assert not source.last_check_ok and source.last_check_message
    assert export_plan(plan)["data_source"] == data["data_source"]
    # The same file again: nothing to check, nothing recorded.
    activities = Activity.objects.filter(plan=plan).count()
    import_plan(copy.deepcopy(data))
    assert checks == ["lake.sales.events"]
    assert Activity.objects.filter(plan=plan).count() == activities


def test_imported_events_are_left_out_of_the_file(plan):
    assert "data_source" not in export_plan(plan)
    PlanDataSource.objects.create(plan=plan, engine="imported")
    assert "data_source" not in export_plan(plan)


@pytest.mark.parametrize("key", ["token", "access_token", "Password"])
def test_a_file_holding_a_token_is_refused_and_nothing_is_written(db, key):
    data = spark_file("sc://localhost:15002", **{key: "s3cret-value"})
    with pytest.raises(PlanFileError) as refused:
        import_plan(data)
    message = str(refused.value)
    assert f"data_source.{key}: a plan file never holds the cluster's token" in message
    assert "s3cret-value" not in message
    assert not PlanDataSource.objects.exists()


def test_a_wrong_source_is_said_at_its_place(db):
    data = spark_file("http://spark:15002", table="no such table!", colour="blue")
    data["data_source"]["columns"] = {"moment": "ts"}
    with pytest.raises(PlanFileError) as refused:
        import_plan(data)
    errors = refused.value.errors
    assert (
        'data_source: unknown key "colour"; the keys there are engine, url, table, columns, '
        "token_env" in errors
    )
    data["data_source"].pop("colour")
    with pytest.raises(PlanFileError) as refused:
        import_plan(data)
    errors = refused.value.errors
    assert "data_source.url: Enter the cluster's address, starting with sc://." in errors
    assert any(
        e.startswith("data_source.columns: moment: not a column of an event") for e in errors
    )
    assert not PlanDataSource.objects.exists()


def test_a_file_without_the_source_takes_the_plan_back_to_imported_events(db, checks):
    plan, _ = import_plan(spark_file(f"sc://localhost:{_free_port()}"))
    exported = export_plan(plan)
    del exported["data_source"]

    import_plan(exported)

    assert PlanDataSource.objects.get(plan=plan).engine == "imported"
    assert "data_source" not in export_plan(plan)
    assert Activity.objects.filter(plan=plan, item_type="data source").count() == 2


@pytest.mark.slow
def test_a_file_pointing_at_a_live_cluster_is_connected(plan, spark_server, tmp_path, monkeypatch):
    store(plan, [Row(r.customer, r.at, r.type, r.value) for r in generate()[:40]])
    table = events_as_parquet(plan, tmp_path / "events", {"occurred_at": "ts"})
    monkeypatch.setenv(TOKEN_ENV, spark_server.token)
    data = export_plan(plan)
    data["data_source"] = spark_file(f"sc://localhost:{spark_server.port}")["data_source"]
    data["data_source"]["table"] = table

    import_plan(data)

    source = PlanDataSource.objects.get(plan=plan)
    assert source.last_check_ok, source.last_check_message
    assert source.last_check_message.startswith("Connected: 40 events")
    assert spark_server.token not in str(export_plan(plan))
