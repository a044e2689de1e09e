from typing import Any

from django.apps import AppConfig
from django.db import connections
from django.db.models.signals import post_migrate, post_save


def _ensure_integrity(using: str = "default", **kwargs: Any) -> None:
    """The events' integrity triggers, again after every migrate (see insights.integrity)."""
    from django.db.migrations.recorder import MigrationRecorder

    from .integrity import install

    connection = connections[using]
    applied = MigrationRecorder(connection).applied_migrations()
    if ("insights", "0008_events_load_fast") in applied:
        install(connection)


def _test_saved(
    instance: Any,
    created: bool = False,
    raw: bool = False,
    update_fields: Any = None,
    **kwargs: Any,
) -> None:
    """A new test, or a changed one, gets its history in the background. A save that leaves the
    test as its histories have it (a reworded statement, a new owner) sends no job: one query
    here spares the worker a job on every edit of a tested assumption."""
    from .services.history import is_new_test, request_history

    if raw or not instance.has_test:
        return
    if update_fields is not None and not set(update_fields) & set(instance.TEST_FIELDS):
        return
    if created or is_new_test(instance):
        request_history(instance)


def _plan_saved(
    instance: Any,
    created: bool = False,
    raw: bool = False,
    update_fields: Any = None,
    **kwargs: Any,
) -> None:
    """A plan's histories follow its period: drawn again when it changed (a new plan has none)."""
    from .services.history import period_changed, request_plan_history

    if raw or created:
        return
    if update_fields is not None:
        changed = "period" in update_fields  # saved by name only when it changed
    else:
        changed = period_changed(instance)
    if changed:
        request_plan_history(instance.pk)


class InsightsConfig(AppConfig):
    name = "insights"

    def ready(self) -> None:
        from planning.models import Assumption, Plan
        from planning.planfile.sections import register

        from .planfile import SECTION

        register(SECTION)  # the plan file's "data_source"

        post_migrate.connect(_ensure_integrity, sender=self, dispatch_uid="insights_integrity")
        post_save.connect(_test_saved, sender=Assumption, dispatch_uid="insights_test_saved")
        post_save.connect(_plan_saved, sender=Plan, dispatch_uid="insights_plan_saved")
