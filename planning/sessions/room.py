"""The room: starting a session, moving it from step to step, its shared timer, ending it.

The facilitator's changes lock the session row, so two clicks at once (two facilitators, a
double click) apply one after the other. Each change raises the session's `revision`, and once
the transaction commits the plan's open streams hear of it (planning/live): every screen in the
room re-fetches its own view of it.

The timer lives here, on the server: running while `timer_ends_at` is set (every screen counts
down to that moment), paused while `timer_left` holds the seconds that were left, idle when
neither is set (it then shows the step's timebox). Moving to another step makes it idle.
"""

from __future__ import annotations

import datetime as dt
from functools import partial

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from .. import jobs, live
from ..models.sessions import SessionStatus, SessionStep, WorkshopSession
from .errors import SessionError

# By name: the task's module reads the summary, which reads this one.
SUMMARY_TASK = "planning.sessions.tasks.send_session_summary"
MINUTE = 60
MAX_TIMER_SECONDS = 4 * 3600


def locked(session: WorkshopSession) -> WorkshopSession:
    """The session as stored, locked until the caller's transaction ends."""
    return WorkshopSession.objects.select_for_update().select_related("plan").get(pk=session.pk)


def changed(session: WorkshopSession) -> None:
    """Every screen in the room follows: a new revision, heard once the transaction commits."""
    WorkshopSession.objects.filter(pk=session.pk).update(revision=F("revision") + 1)
    plan_id = session.plan_id
    transaction.on_commit(lambda: live.publish(plan_id))


def running(session: WorkshopSession) -> WorkshopSession:
    """The session as stored and locked, while it runs; else SessionError."""
    session = locked(session)
    if session.status != SessionStatus.RUNNING:
        raise SessionError(
            "This session has ended." if session.ended_at else "Start the session first."
        )
    return session


def require_step(session: WorkshopSession, step: SessionStep, kind: str, what: str) -> None:
    """The room is on `step` and it is a `kind` step, else SessionError: "<what> in <kind>
    steps", or that the room moved on."""
    if step.kind != kind:
        raise SessionError(f"{what} in {kind.replace('_', ' ')} steps.")
    if session.status != SessionStatus.RUNNING or session.current_step_id != step.pk:
        raise SessionError("The room is not on this step any more.")


def _idle(session: WorkshopSession) -> None:
    session.timer_ends_at = None
    session.timer_left = None


@transaction.atomic
def start_session(session: WorkshopSession) -> WorkshopSession:
    session = locked(session)
    if session.status != SessionStatus.PLANNED:
        raise SessionError("This session has started already.")
    first = session.steps.order_by("position", "id").first()
    if first is None:
        raise SessionError("Add a step to the agenda before starting.")
    session.status = SessionStatus.RUNNING
    session.started_at = timezone.now()
    session.current_step = first
    _idle(session)
    try:
        with transaction.atomic():
            session.save()
    except IntegrityError:
        raise SessionError("Another session of this plan is running: end it first.") from None
    changed(session)
    return session


@transaction.atomic
def go_to_step(session: WorkshopSession, step: SessionStep) -> WorkshopSession:
    """The room moves to `step` (the timer goes idle, showing the step's timebox)."""
    session = running(session)
    if step.session_id != session.pk:
        raise SessionError("That step is not on this session's agenda.")
    if session.current_step_id != step.pk:
        session.current_step = step
        _idle(session)
        session.save(update_fields=["current_step", "timer_ends_at", "timer_left"])
        changed(session)
    return session


@transaction.atomic
def next_step(session: WorkshopSession) -> WorkshopSession:
    session = running(session)
    steps = list(session.steps.order_by("position", "id"))
    ids = [s.pk for s in steps]
    index = ids.index(session.current_step_id) if session.current_step_id in ids else -1
    if index + 1 >= len(steps):
        raise SessionError("This is the last step: end the session when the room is done.")
    return go_to_step(session, steps[index + 1])


@transaction.atomic
def end_session(session: WorkshopSession) -> WorkshopSession:
    session = running(session)
    session.status = SessionStatus.ENDED
    session.ended_at = timezone.now()
    _idle(session)
    session.save()
    changed(session)
    # The summary e-mail goes to the members once the end is committed.
    transaction.on_commit(partial(jobs.send, SUMMARY_TASK, [session.pk], {}))
    return session


# --- the timer -----------------------------------------------------------------------------------


def _timebox(session: WorkshopSession) -> int:
    step = session.current_step
    return (step.timebox_minutes if step else 10) * MINUTE


def _save_timer(session: WorkshopSession) -> WorkshopSession:
    session.save(update_fields=["timer_ends_at", "timer_left"])
    changed(session)
    return session


@transaction.atomic
def start_timer(session: WorkshopSession, now: dt.datetime | None = None) -> WorkshopSession:
    """Run the timer: on from where it was paused, or the step's timebox when idle."""
    session = running(session)
    if session.timer_ends_at is not None:
        return session  # running already
    now = now or timezone.now()
    left = session.timer_left if session.timer_left is not None else _timebox(session)
    session.timer_ends_at = now + dt.timedelta(seconds=left)
    session.timer_left = None
    return _save_timer(session)


@transaction.atomic
def pause_timer(session: WorkshopSession, now: dt.datetime | None = None) -> WorkshopSession:
    session = running(session)
    if session.timer_ends_at is None:
        return session
    session.timer_left = session.seconds_left(now or timezone.now())
    session.timer_ends_at = None
    return _save_timer(session)


@transaction.atomic
def add_minute(session: WorkshopSession, now: dt.datetime | None = None) -> WorkshopSession:
    """One more minute, running or paused; on an idle timer, on top of the step's timebox. A
    timer that ran out starts again from one minute."""
    session = running(session)
    now = now or timezone.now()
    if session.timer_ends_at is not None:
        session.timer_ends_at = max(session.timer_ends_at, now) + dt.timedelta(seconds=MINUTE)
        if (session.timer_ends_at - now).total_seconds() > MAX_TIMER_SECONDS:
            raise SessionError("The timer runs for four hours at most.")
    else:
        left = session.timer_left if session.timer_left is not None else _timebox(session)
        session.timer_left = min(MAX_TIMER_SECONDS, left + MINUTE)
    return _save_timer(session)


@transaction.atomic
def end_timer(session: WorkshopSession) -> WorkshopSession:
    session = running(session)
    _idle(session)
    return _save_timer(session)
