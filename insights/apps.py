from typing import Any

from django.apps import AppConfig
from django.db import connections
from django.db.models.signals import post_migrate


def _ensure_integrity(using: str = "default", **kwargs: Any) -> None:
    """The events' integrity triggers, again after every migrate (see insights.integrity)."""
    from django.db.migrations.recorder import MigrationRecorder

    from .integrity import install

    connection = connections[using]
    applied = MigrationRecorder(connection).applied_migrations()
    if ("insights", "0008_events_load_fast") in applied:
        install(connection)


class InsightsConfig(AppConfig):
    name = "insights"

    def ready(self) -> None:
        post_migrate.connect(_ensure_integrity, sender=self, dispatch_uid="insights_integrity")
