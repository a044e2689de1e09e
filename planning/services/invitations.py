"""Invitations: the only way into a plan from the web (issue 9).

A facilitator invites an e-mail address; the answer is the same whatever the address, because
inviting looks up no account. The invited person joins by accepting, signed in with the account
of that address, or by setting up an account from the invitation (the one way the app creates
accounts outside the back-office). Every step is in the plan's activity."""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import BaseUserManager
from django.core import signing
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.crypto import constant_time_compare
from django.utils.formats import date_format

from .. import tasks
from ..jobs import enqueue
from ..models import INVITATION_LINK_SALT, Activity, Invitation, Membership, Plan, display_name
from .people import MemberError, add_member, lock_plan_people
from .plans import User, record_activity


class InvitationGone(Exception):
    """The link leads nowhere any more: `status` is 404 (never valid) or 410 (was valid)."""

    def __init__(self, message: str, status: int = 410) -> None:
        super().__init__(message)
        self.status = status


class WrongAccount(Exception):
    """Signed in with an account whose e-mail is not the invited address."""


# --- the link ------------------------------------------------------------------------------------


def invitation_from_link(token: str) -> Invitation:
    """The invitation a link names, still open; InvitationGone says why not, in words."""
    try:
        pk, _, secret = signing.Signer(salt=INVITATION_LINK_SALT).unsign(token).partition(".")
    except signing.BadSignature:
        pk, secret = "", ""
    invitation = (
        Invitation.objects.select_related("plan", "invited_by").filter(pk=pk).first()
        if pk.isdigit()
        else None
    )
    if invitation is None:
        raise InvitationGone(
            "This invitation link is not valid: check that you opened the whole link from the "
            "e-mail.",
            status=404,
        )
    if not constant_time_compare(invitation.token, secret):
        raise InvitationGone(
            "This invitation was sent again since, with a new link: use the latest e-mail."
        )
    _require_open(invitation)
    return invitation


def _require_open(invitation: Invitation) -> None:
    state = invitation.state(timezone.now())
    if state == "pending":
        return
    inviter = display_name(invitation.invited_by) if invitation.invited_by else "a facilitator"
    raise InvitationGone(
        {
            "accepted": "This invitation has been used already.",
            "declined": "This invitation was declined.",
            "revoked": "This invitation was withdrawn by the plan's facilitators.",
            "expired": (
                f"This invitation expired on {date_format(invitation.expires_at, 'j F Y')}. "
                f"Ask {inviter} to send it again."
            ),
        }[state]
    )


# --- facilitators: invite, resend, revoke ------------------------------------------------------


def normalize_email(email: str) -> str:
    return BaseUserManager.normalize_email(email.strip())


@transaction.atomic
def invite(plan: Plan, actor: User, email: str, role: str, business_unit: str = "") -> Invitation:
    """Invite an address to the plan and e-mail it a link. An open invitation of the same
    address is sent again with the new role. No account is looked up or created."""
    email = normalize_email(email)
    lock_plan_people(plan.pk)
    if plan.memberships.filter(user__email__iexact=email).exists():
        # Members' addresses are on the members page already: this tells nothing new.
        raise MemberError(f"{email} is a member of this plan already.")
    invitation = plan.invitations.open().filter(email__iexact=email).first()
    if invitation is None:
        invitation = Invitation(plan=plan, email=email)
    invitation.role, invitation.business_unit = role, business_unit.strip()
    invitation.invited_by = actor if actor.is_authenticated else None
    _send(invitation, actor)
    return invitation


@transaction.atomic
def resend_invitation(invitation: Invitation, actor: User) -> Invitation:
    """A new link (the old one stops working) and a new expiry date, e-mailed again."""
    invitation = _locked_open(invitation)
    _send(invitation, actor)
    return invitation


@transaction.atomic
def revoke_invitation(invitation: Invitation, actor: User) -> Invitation:
    invitation = _locked_open(invitation)
    invitation.revoked_at = timezone.now()
    invitation.save(update_fields=["revoked_at"])
    record_activity(
        invitation.plan,
        actor,
        "deleted",
        "invitation",
        item_id=invitation.pk,
        item_label=invitation.email,
        before={"role": invitation.role, "business_unit": invitation.business_unit},
    )
    return invitation


def _send(invitation: Invitation, actor: User) -> None:
    """Save with a fresh token and expiry, record it, and e-mail the link once committed."""
    _check_send_limit(actor)
    now = timezone.now()
    invitation.token = secrets.token_urlsafe(32)
    invitation.sent_at = now
    invitation.expires_at = now + dt.timedelta(days=settings.INVITATION_DAYS)
    invitation.save()
    record_activity(
        invitation.plan,
        actor,
        "sent",
        "invitation",
        item_id=invitation.pk,
        item_label=invitation.email,
        after={"role": invitation.role, "business_unit": invitation.business_unit},
    )
    enqueue(tasks.send_invitation, invitation.pk)


def _check_send_limit(actor: User) -> None:
    """Each invitation is an e-mail to an address of the sender's choosing: a daily cap keeps
    the app from being anyone's mailer."""
    limit = settings.INVITATIONS_PER_DAY
    sent = Activity.objects.filter(
        actor_id=actor.pk,
        item_type="invitation",
        action="sent",
        created_at__gt=timezone.now() - dt.timedelta(days=1),
    ).count()
    if sent >= limit:
        raise MemberError(
            f"You have sent {limit} invitations in the last 24 hours, the most allowed; "
            "try again tomorrow."
        )


def _locked_open(invitation: Invitation) -> Invitation:
    lock_plan_people(invitation.plan_id)
    current = Invitation.objects.select_related("plan").get(pk=invitation.pk)
    ended = {"accepted": "accepted", "declined": "declined", "revoked": "withdrawn"}
    state = current.state(timezone.now())
    if state in ended:
        raise MemberError(f"The invitation of {current.email} was {ended[state]} already.")
    return current


# --- the invited person: accept, decline, or set up an account ----------------------------------


def email_matches(invitation: Invitation, user: User) -> bool:
    email = getattr(user, "email", "") or ""
    return bool(email) and email.strip().lower() == invitation.email.lower()


@transaction.atomic
def accept_invitation(invitation: Invitation, user: User) -> Membership:
    """Join the plan. Only the account of the invited address may: the link proves that
    address, and signing in proves the account."""
    invitation = _locked_pending(invitation)
    if not email_matches(invitation, user):
        raise WrongAccount(invitation.email)
    now = timezone.now()
    invitation.accepted_at, invitation.accepted_by = now, user
    invitation.save(update_fields=["accepted_at", "accepted_by"])
    membership = Membership.objects.filter(plan=invitation.plan, user=user).first()
    if membership is not None:  # put in the plan meanwhile (the back-office, a plan file)
        return membership
    return add_member(
        invitation.plan,
        user,
        user,
        invitation.role,
        invitation.business_unit,
        invited_by=display_name(invitation.invited_by) if invitation.invited_by else "",
    )


@transaction.atomic
def decline_invitation(invitation: Invitation, user: User | None) -> None:
    """Anyone holding the link may decline (it went to the invited address), signed in or not
    (`user` None); a signed-in account of another address may not."""
    invitation = _locked_pending(invitation)
    if user is not None and not email_matches(invitation, user):
        raise WrongAccount(invitation.email)
    invitation.declined_at = timezone.now()
    invitation.save(update_fields=["declined_at"])
    record_activity(
        invitation.plan,
        user,
        "declined",
        "invitation",
        item_id=invitation.pk,
        item_label=invitation.email,
    )


@dataclass
class NewAccount:
    username: str
    first_name: str
    last_name: str
    password: str


def account_exists(invitation: Invitation) -> bool:
    return get_user_model().objects.filter(email__iexact=invitation.email).exists()


@transaction.atomic
def join_with_new_account(invitation: Invitation, account: NewAccount) -> Membership:
    """Set up an account for the invited address and join. An address that has an account
    already signs in with it instead (one person, one account)."""
    invitation = _locked_pending(invitation)
    if account_exists(invitation):
        raise MemberError(
            f"There is an account for {invitation.email} already: sign in with it to accept, "
            "or reset its password if you have forgotten it."
        )
    try:
        user = get_user_model().objects.create_user(
            username=account.username,
            email=invitation.email,
            password=account.password,
            first_name=account.first_name,
            last_name=account.last_name,
        )
    except IntegrityError:  # the form checked; someone else took the name since
        raise MemberError(
            f"The user name “{account.username}” was taken a moment ago; choose another."
        ) from None
    return accept_invitation(invitation, user)


def _locked_pending(invitation: Invitation) -> Invitation:
    lock_plan_people(invitation.plan_id)
    current = Invitation.objects.select_related("plan", "invited_by").get(pk=invitation.pk)
    if current.token != invitation.token:
        raise InvitationGone(
            "This invitation was sent again since, with a new link: use the latest e-mail."
        )
    _require_open(current)
    return current
