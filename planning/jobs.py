"""Background jobs that a broker outage cannot lose or turn into errors.

`enqueue(task, *args)` sends a Celery task once the surrounding transaction commits, as
`delay_on_commit` does. When the broker cannot take it (Redis down), the change that asked for
it is already saved: the job is kept as a `PendingJob` row instead of raising, the person is told
(the middleware below adds one message to the response), and the beat's `send_pending_jobs`
sends the kept jobs once the broker answers again. Every task is safe to run twice, so a job
sent twice in a race does no harm.

Not a library: the outbox packages for Celery either wrap every send in a table (a write per
job when the broker is fine) or bring their own scheduler; this keeps a row only on failure.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextvars import ContextVar
from functools import partial
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from celery import Task, current_app
from django.contrib import messages
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from kombu.exceptions import OperationalError as KombuOperationalError
from redis.exceptions import RedisError

from .models import PendingJob

log = logging.getLogger(__name__)

# What a broker that is down (or unreachable) raises when a message is sent to it.
BROKER_DOWN = (KombuOperationalError, RedisError, OSError)

WAITING = (
    "Background jobs are not running right now; your change is saved and will run when they are."
)
# The jobs this request could not hand to the broker (None outside a request).
_kept: ContextVar[list[str] | None] = ContextVar("outside_in_jobs_kept", default=None)


def enqueue(task: Task, *args: Any, **kwargs: Any) -> None:
    """Send `task(*args, **kwargs)` after the commit; kept for later if the broker is down."""
    transaction.on_commit(partial(send, task.name, list(args), kwargs))


def send(name: str, args: list[Any], kwargs: dict[str, Any]) -> bool:
    """Hand one job to the broker now; False (and the job kept) when it cannot take it."""
    task = current_app.tasks[name]
    if current_app.conf.task_always_eager:  # tests that run tasks inline: nothing to keep
        task.apply_async(args=args, kwargs=kwargs)
        return True
    try:
        # No retries of Kombu's own: a broker that is down answers at once, and the request
        # that asked for the job must not hang on it.
        task.apply_async(args=args, kwargs=kwargs, retry=False)
    except BROKER_DOWN as error:
        log.warning("could not enqueue %s (kept to send later): %s", name, error)
        PendingJob.objects.create(task=name, args=args, kwargs=kwargs)
        kept = _kept.get()
        if kept is not None:
            kept.append(name)
        return False
    return True


def send_pending_jobs(limit: int = 500) -> int:
    """Send the kept jobs, oldest first; stops at the first the broker still refuses. Two beats
    at once never send one job twice: each claims its rows with SKIP LOCKED."""
    sent = 0
    with transaction.atomic():
        jobs = PendingJob.objects.select_for_update(skip_locked=True).order_by("id")[:limit]
        for job in jobs:
            try:
                current_app.tasks[job.task].apply_async(
                    args=job.args, kwargs=job.kwargs, retry=False
                )
            except BROKER_DOWN as error:
                log.warning("background jobs still cannot be sent: %s", error)
                PendingJob.objects.filter(pk=job.pk).update(attempts=job.attempts + 1)
                break
            job.delete()
            sent += 1
    return sent


def middleware(get_response: Callable) -> Callable:
    """Tell the person, once, when a job their request asked for had to wait."""

    def told(request: HttpRequest, kept: list[str], response: HttpResponse) -> HttpResponse:
        if kept and hasattr(request, "_messages"):
            messages.warning(request, WAITING)
        return response

    if iscoroutinefunction(get_response):

        async def async_middleware(request: HttpRequest) -> HttpResponse:
            kept: list[str] = []
            token = _kept.set(kept)
            try:
                return told(request, kept, await get_response(request))
            finally:
                _kept.reset(token)

        return markcoroutinefunction(async_middleware)

    def sync_middleware(request: HttpRequest) -> HttpResponse:
        kept: list[str] = []
        token = _kept.set(kept)
        try:
            return told(request, kept, get_response(request))
        finally:
            _kept.reset(token)

    return sync_middleware


middleware.sync_capable = True  # type: ignore[attr-defined]
middleware.async_capable = True  # type: ignore[attr-defined]
