"""The sessions' Celery task, registered by planning/apps.py. It is not in planning/tasks.py:
planning's services import that module, and the summary it sends reads the services."""

from __future__ import annotations

from celery import shared_task

from ..tasks import EMAIL_TASK
from .mail import send_summary


@shared_task(**EMAIL_TASK)
def send_session_summary(session_id: int) -> int:
    """E-mail an ended session's summary to the plan's members (planning/sessions/mail.py);
    how many were sent. Sent once: a run after a successful one sends nothing; a mail server
    failing part-way leaves it unsent, for the retry to send to everyone."""
    return send_summary(session_id)
