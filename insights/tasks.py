"""Celery tasks: thin wrappers that take ids and call a service."""

from __future__ import annotations

from celery import shared_task
from django.db import OperationalError

from . import services


@shared_task(
    acks_late=True,
    autoretry_for=(OperationalError,),
    retry_backoff=5,
    retry_backoff_max=300,
    max_retries=5,
)
def import_events(import_id: int) -> None:
    """Import a kept file. Redelivered after a crash, it reclaims the import only once the dead
    run's heartbeat has gone stale; its transaction left nothing behind."""
    services.run_import(import_id)


@shared_task
def mark_stalled_imports() -> int:
    return services.mark_stalled_imports()
