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


def _test_saved(instance: Any, raw: bool = False, **kwargs: Any) -> None:
    """A saved test gets its history in the background (nothing if it has one already)."""
    from .services.history import request_history

    if not raw and instance.has_test:
        request_history(instance)


def _plan_saved(instance: Any, raw: bool = False, update_fields: Any = None, **kwargs: Any) -> None:
    """A plan's period may have changed: its histories follow (each computed only if missing)."""
    from .services.history import request_plan_history

    if not raw and (update_fields is None or "period" in update_fields):
        request_plan_history(instance.pk)


class InsightsConfig(AppConfig):
    name = "insights"

    def ready(self) -> None:
        from planning.models import Assumption, Plan

        post_migrate.connect(_ensure_integrity, sender=self, dispatch_uid="insights_integrity")
        post_save.connect(_test_saved, sender=Assumption, dispatch_uid="insights_test_saved")
        post_save.connect(_plan_saved, sender=Plan, dispatch_uid="insights_plan_saved")
