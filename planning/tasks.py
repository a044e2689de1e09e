"""Celery tasks of the workspace: thin wrappers that take ids."""

from __future__ import annotations

import smtplib

from celery import shared_task
from django.conf import settings
from django.contrib.auth.tokens import default_token_generator
from django.core.mail import EmailMultiAlternatives
from django.db import OperationalError
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from .models import Comment, Membership

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
    author = (
        comment.author.get_full_name() or comment.author.get_username()
        if comment.author
        else "Someone"
    )
    context = {
        "comment": comment,
        "author": author,
        "target": target,
        "member": member,
        "plan_url": settings.SITE_URL + reverse("planning:board", args=[comment.plan.slug]),
    }
    message = EmailMultiAlternatives(
        subject=f"{author} mentioned you in “{comment.plan.name}”",
        body=render_to_string("planning/email/mention.txt", context),
        to=[member.user.email],
    )
    message.send()
    return True


@shared_task(**EMAIL_TASK)
def send_invitation(membership_id: int, inviter_name: str) -> bool:
    """Invite a new member: a link to choose their password, which signs them in to the plan."""
    member = Membership.objects.select_related("user", "plan").filter(pk=membership_id).first()
    if member is None or not member.user.email:
        return False
    user = member.user
    link = settings.SITE_URL + reverse(
        "password_reset_confirm",
        kwargs={
            "uidb64": urlsafe_base64_encode(force_bytes(user.pk)),
            "token": default_token_generator.make_token(user),
        },
    )
    context = {
        "member": member,
        "inviter": inviter_name,
        "link": link,
        "username": user.get_username(),
    }
    EmailMultiAlternatives(
        subject=f"{inviter_name} invited you to “{member.plan.name}” on Outside-In",
        body=render_to_string("planning/email/invitation.txt", context),
        to=[user.email],
    ).send()
    return True
