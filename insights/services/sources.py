"""A plan's data source (issue #14): its events imported into Outside-In, or a table on the
customer's Apache Spark cluster where every re-test and history of the plan runs.

The cluster's access token is never stored: the source names the environment variable of the
Outside-In processes that holds it, and it is read only when a session is opened.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from planning.models import Plan
from planning.services import record_activity

from ..metrics import sql
from ..metrics.spark import DataSource, SourceError, check, on_source
from ..models import PlanDataSource
from .versions import data_changed

# The plan whose block already runs on its cluster: a re-test of the whole plan opens one
# session, not one per assumption.
_engine_of: ContextVar[int | None] = ContextVar("plan_engine", default=None)


# How long figures read from a Spark cluster are kept before they are read again: the cluster's
# table changes without Outside-In hearing of it, and a page should not wait on the cluster
# each time it is opened.
SPARK_FRESH_SECONDS = 15 * 60


def spark_record(plan: Plan) -> PlanDataSource | None:
    """The plan's Spark source, or None if its events are imported: read once per plan object
    (a page asks several times)."""
    try:
        # Django keeps the answer on the plan, also "none" (and select_related fills it).
        record: PlanDataSource = plan.data_source  # type: ignore[attr-defined]
    except PlanDataSource.DoesNotExist:
        return None
    return record if record.on_spark else None


def freshness(plan: Plan) -> str:
    """What else dates a plan's figures beside its data version: nothing for imported events; for a
    Spark source, the source, the current SPARK_FRESH_SECONDS interval and when a member last
    asked to read them again (`read_again`)."""
    record = spark_record(plan)
    if record is None:
        return ""
    asked = cache.get(_asked_key(plan.pk), 0)
    return f":spark:{record.pk}:{int(time.time() // SPARK_FRESH_SECONDS)}:{asked}"


def read_again(plan: Plan) -> None:
    """Read the plan's figures from its cluster again at the next look, whatever is kept (the
    customer's table changed: Outside-In cannot hear of it)."""
    # The moment asked, kept longer than an interval: when it goes, the interval has moved on.
    cache.set(_asked_key(plan.pk), time.time_ns(), SPARK_FRESH_SECONDS * 2)


def _asked_key(plan_id: int) -> str:
    return f"spark-read-again:{plan_id}"


def data_source_of(plan: Plan) -> PlanDataSource:
    """The plan's source as stored, or an unsaved "imported" one (the default)."""
    found = PlanDataSource.objects.filter(plan=plan).first()
    return found or PlanDataSource(plan=plan)


def spark_source(record: PlanDataSource) -> DataSource:
    """The source as the metric engine reads it, with its token from the environment."""
    token = ""
    if record.token_env:
        token = os.environ.get(record.token_env, "")
        if not token:
            raise SourceError(
                f"The access token for the Spark cluster is missing: the variable "
                f"{record.token_env} is not set where Outside-In runs. Ask whoever runs "
                "Outside-In to set it."
            )
    return DataSource(record.url, record.table, token, dict(record.columns or {}))


@contextlib.contextmanager
def plan_engine(plan: Plan | int) -> Iterator[None]:
    """Run the metrics of this block where the plan's events live: nothing changes for imported
    events; a Spark source runs them on its cluster. Never raises on entering: a source that
    cannot be opened fails each metric (an `error` run with the message), not its caller."""
    plan_id = plan if isinstance(plan, int) else plan.pk
    if _engine_of.get() == plan_id:
        yield
        return
    if isinstance(plan, Plan):
        record = spark_record(plan)
    else:
        record = PlanDataSource.objects.filter(plan_id=plan_id, engine="spark").first()
    if record is None:
        yield
        return
    marker = _engine_of.set(plan_id)
    try:
        try:
            source = spark_source(record)
        except SourceError as error:
            with _failing(str(error)):
                yield
        else:
            with on_source(source, plan_id):
                yield
    finally:
        _engine_of.reset(marker)


@contextlib.contextmanager
def _failing(message: str) -> Iterator[None]:
    def run(statement: str, params: list[Any]) -> list[tuple]:
        raise SourceError(message)

    with sql.using(sql.Dialect("spark", run)):
        yield


def check_message(events: int, latest: Any) -> str:
    when = f", latest {latest:%-d %b %Y}" if latest else ", none dated yet"
    return f"Connected: {events:,} events{when}."


def check_data_source(record: PlanDataSource) -> bool:
    """Test the connection now and keep the outcome on the source (a few seconds at most)."""
    try:
        events, latest = check(spark_source(record))
    except SourceError as error:
        record.last_check_ok, record.last_check_message = False, str(error)
    else:
        record.last_check_ok, record.last_check_message = True, check_message(events, latest)
    record.last_checked_at = timezone.now()
    if record.pk:
        record.save(update_fields=["last_checked_at", "last_check_ok", "last_check_message"])
    return record.last_check_ok


SETTINGS = ("engine", "url", "table", "columns", "token_env")


def save_data_source(record: PlanDataSource, *, user: Any = None) -> PlanDataSource:
    """Save a facilitator's change of the plan's source, check a Spark one, and record it in
    the plan's activity (without any token: only the name of its variable is ever stored).

    A Spark source that fails its check is saved all the same and shown as failing: the
    cluster may be down for the night, or its token not yet set where Outside-In runs, and the
    facilitator should not have to type it all again; until it answers, tests are error runs
    that say why, never numbers from the imported events."""
    before = (
        PlanDataSource.objects.filter(pk=record.pk).values(*SETTINGS).first() if record.pk else None
    )
    if record.on_spark:
        check_data_source(record)
    else:
        record.last_checked_at, record.last_check_ok, record.last_check_message = None, False, ""
    with transaction.atomic():
        record.save()
        after = {name: getattr(record, name) for name in SETTINGS}
        if before != after:
            record_activity(
                record.plan,
                user,
                "updated",
                "data source",
                item_id=record.pk,
                item_label="Data source",
                before=before,
                after=after,
            )
            # The plan's events are now others: what was computed from the old ones is stale.
            data_changed(record.plan_id)
    return record
