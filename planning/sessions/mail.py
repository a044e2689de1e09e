"""The session summary by e-mail, to every member with an address, once the session ends."""

from __future__ import annotations

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, mailers
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from ..mail import subject_line
from ..models import Membership
from ..models.sessions import SessionStatus, WorkshopSession
from .pdf import pdf_filename, summary_pdf
from .summary import owners, summarize


def send_summary(session_id: int) -> int:
    """E-mail an ended session's summary, with its PDF, to each member with an address; how
    many were sent. Sent once: the messages go out over one connection inside the transaction
    that claims the session (`summary_sent_at`, a conditional UPDATE), so a second run (a retry,
    a second end) sends nothing, and a mail server failing part-way rolls the claim back for the
    task's retry: a member may then get the summary twice, but nobody goes without it."""
    session = (
        WorkshopSession.objects.select_related("plan")
        .filter(pk=session_id, status=SessionStatus.ENDED)
        .first()
    )
    if session is None or session.summary_sent_at is not None:
        return 0
    messages = _messages(session)  # made before the claim: the PDF takes a moment
    with transaction.atomic():
        claimed = WorkshopSession.objects.filter(
            pk=session.pk, summary_sent_at__isnull=True
        ).update(summary_sent_at=timezone.now())
        if not claimed:
            return 0
        if messages:
            mailers.default.send_messages(messages)
    return len(messages)


def _messages(session: WorkshopSession) -> list[EmailMultiAlternatives]:
    members = (
        Membership.objects.filter(plan_id=session.plan_id, user__is_active=True)
        .exclude(user__email="")
        .select_related("user")
        .order_by("id")
    )
    if not members:
        return []
    plan = session.plan
    summary = summarize(session)
    pdf = summary_pdf(session, summary)
    context = {
        "plan": plan,
        "session": session,
        "summary": summary,
        "owners": owners(summary),
        "summary_url": settings.SITE_URL
        + reverse("planning:session_summary", args=[plan.slug, session.pk]),
    }
    subject = subject_line(f"Summary of “{session.title}” on “{plan.name}”")
    messages = []
    for member in members:
        context["member"] = member
        message = EmailMultiAlternatives(
            subject=subject,
            body=render_to_string("planning/email/session_summary.txt", context),
            to=[member.user.email],
        )
        message.attach_alternative(
            render_to_string("planning/email/session_summary.html", context), "text/html"
        )
        message.attach(pdf_filename(session), pdf, "application/pdf")
        messages.append(message)
    return messages
