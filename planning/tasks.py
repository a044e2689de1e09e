"""Celery tasks of the workspace: thin wrappers that take ids."""

from __future__ import annotations

import smtplib

from celery import shared_task
from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import OperationalError
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from . import jobs
from .mail import subject_line
from .models import Comment, Invitation, Membership, display_name

# An e-mail task: a failing mail server delays the message, retried with backoff, never drops it.
EMAIL_TASK = {
    "acks_late": True,
    "autoretry_for": (smtplib.SMTPException, OSError, OperationalError),
    "retry_backoff": 30,
    "retry_backoff_max": 3600,
    "max_retries": 12,
}


@shared_task(**EMAIL_TASK)
def send_mention(comment_id: int, membership_id: int) -> bool:
    """E-mail a member mentioned in a comment. A failing mail server delays it, with backoff."""
    comment = (
        Comment.objects.select_related("plan", "author", "choice", "assumption")
        .filter(pk=comment_id)
        .first()
    )
    member = Membership.objects.select_related("user").filter(pk=membership_id).first()
    if comment is None or member is None or not member.user.email:
        return False
    target = comment.choice or comment.assumption
    author = display_name(comment.author) if comment.author else "Someone"
    context = {
        "comment": comment,
        "author": author,
        "target": target,
        "member": member,
        "comment_url": settings.SITE_URL + comment.get_absolute_url(),
        "plan_url": settings.SITE_URL + reverse("planning:board", args=[comment.plan.slug]),
    }
    message = EmailMultiAlternatives(
        subject=subject_line(f"{author} mentioned you in “{comment.plan.name}”"),
        body=render_to_string("planning/email/mention.txt", context),
        to=[member.user.email],
    )
    message.send()
    return True


@shared_task(**EMAIL_TASK)
def send_invitation(invitation_id: int) -> bool:
    """E-mail an invitation's link. The link is made from the invitation as it is now: one
    withdrawn, answered or sent again with a new link before this runs sends nothing stale."""
    invitation = (
        Invitation.objects.select_related("plan", "invited_by")
        .open()
        .filter(pk=invitation_id, expires_at__gt=timezone.now())
        .first()
    )
    if invitation is None:
        return False
    inviter = invitation.invited_by
    inviter_name = display_name(inviter) if inviter else "Someone"
    context = {
        "invitation": invitation,
        "inviter": inviter_name,
        "link": settings.SITE_URL + reverse("invitation", args=[invitation.link_token()]),
    }
    EmailMultiAlternatives(
        subject=subject_line(
            f"{inviter_name} invited you to “{invitation.plan.name}” on Outside-In"
        ),
        body=render_to_string("planning/email/invitation.txt", context),
        to=[invitation.email],
    ).send()
    return True


@shared_task
def send_pending_jobs() -> int:
    """Every minute (beat): send the jobs the broker could not take when they were asked for."""
    return jobs.send_pending_jobs()
