"""Plans, their members and invitations: who is in a plan, and the rules for their names."""

from __future__ import annotations

import datetime as dt
import unicodedata
import zoneinfo
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.core import signing
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower


class Role(models.TextChoices):
    CMO = "cmo", "CMO"
    CIO = "cio", "CIO"
    BU_LEADER = "bu_leader", "BU leader"
    FACILITATOR = "facilitator", "Facilitator"
    OBSERVER = "observer", "Observer"


class Cadence(models.TextChoices):
    OFF = "off", "Off"
    DAILY = "daily", "Daily"
    WEEKLY = "weekly", "Weekly"


class Period(models.TextChoices):
    """The plan's period for customer figures and assumption history (DOMAIN §8, §10), in UTC."""

    MONTH = "month", "Month"
    WEEK = "week", "Week (Monday to Sunday)"


WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def validate_timezone(value: str) -> None:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValidationError(
            f"“{value}” is not a time zone (try “Europe/Paris” or “UTC”)."
        ) from None


RESERVED_SLUGS = {"new"}


def validate_plan_slug(value: str) -> None:
    if value in RESERVED_SLUGS:
        raise ValidationError(f"“{value}” is reserved; choose another short name.")


def one_line_problem(value: str) -> str | None:
    """What keeps `value` from being one line of text (a name, a title), in words; None when
    nothing does. A plan's name goes into e-mail subjects, where a line break cannot be."""
    for char in value:
        # Cc: control characters (tab, CR, LF, NUL…); Zl, Zp: Unicode's line and paragraph breaks.
        category = unicodedata.category(char)
        if category in {"Cc", "Zl", "Zp"}:
            if char == "\t":
                return "A name or title is one line of text: remove the tab."
            if char in "\r\n\v\f\x85" or category != "Cc":
                return "A name or title is one line of text: remove the line break."
            return "A name or title is one line of text: remove the invisible control character."
    return None


def validate_one_line(value: str) -> None:
    problem = one_line_problem(value)
    if problem:
        raise ValidationError(problem, code="one_line")


class Plan(models.Model):
    name = models.CharField(max_length=200, validators=[validate_one_line])
    slug = models.SlugField(max_length=80, unique=True, validators=[validate_plan_slug])
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Bumped on every change: live clients compare it to know what they missed.
    version = models.PositiveBigIntegerField(default=1)

    retest_cadence = models.CharField(max_length=10, choices=Cadence, default=Cadence.OFF)
    retest_weekday = models.PositiveSmallIntegerField(
        default=0, validators=[MaxValueValidator(6)], help_text="0 = Monday … 6 = Sunday"
    )
    retest_time = models.TimeField(default=dt.time(7, 0))
    retest_timezone = models.CharField(max_length=64, default="UTC", validators=[validate_timezone])
    next_retest_at = models.DateTimeField(null=True, blank=True, db_index=True)
    period = models.CharField(
        max_length=10,
        choices=Period,
        default=Period.MONTH,
        help_text="Customer figures and assumption history are drawn per period.",
    )
    # Bumped whenever the plan's events or event map change: what was computed from the data
    # (assumption history) is kept per data version and never recomputed needlessly.
    data_version = models.PositiveBigIntegerField(default=1, editable=False)

    # What a facilitator sets on the settings page (ScheduleForm, services.save_schedule).
    SCHEDULE_FIELDS = ("retest_cadence", "retest_weekday", "retest_time", "retest_timezone")

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=~Q(name=""), name="plan_name_not_blank"),
            models.CheckConstraint(condition=~Q(slug=""), name="plan_slug_not_blank"),
            models.CheckConstraint(condition=Q(retest_weekday__lte=6), name="plan_weekday_valid"),
            models.CheckConstraint(
                condition=Q(retest_cadence__in=Cadence.values), name="plan_cadence_valid"
            ),
            models.CheckConstraint(condition=Q(period__in=Period.values), name="plan_period_valid"),
        ]

    def __str__(self) -> str:
        return self.name

    def save(self, *args: Any, **kwargs: Any) -> None:
        # The next scheduled re-test follows the schedule; a slot already due is left for the
        # dispatcher to take.
        now = dt.datetime.now(dt.UTC)
        due = self.next_retest_at is not None and self.next_retest_at <= now
        if not (due and self.retest_cadence != Cadence.OFF):
            self.next_retest_at = self.next_retest_after(now)
        super().save(*args, **kwargs)

    @property
    def retest_zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.retest_timezone)

    def next_retest_after(self, moment: dt.datetime) -> dt.datetime | None:
        """The first scheduled re-test strictly after `moment`, in UTC; None when off.

        Times are wall-clock times in the plan's zone, so 07:00 Paris stays 07:00 across DST.
        """
        if self.retest_cadence == Cadence.OFF:
            return None
        zone = self.retest_zone
        local = moment.astimezone(zone)
        day = local.date()
        for offset in range(0, 9):
            candidate_day = day + dt.timedelta(days=offset)
            if (
                self.retest_cadence == Cadence.WEEKLY
                and candidate_day.weekday() != self.retest_weekday
            ):
                continue
            candidate = dt.datetime.combine(candidate_day, self.retest_time, tzinfo=zone)
            # Compared in UTC: in the repeated autumn hour, wall-clock order is not time order.
            if candidate.astimezone(dt.UTC) > moment:
                return candidate.astimezone(dt.UTC)
        raise AssertionError("a weekly schedule always has a slot within 8 days")

    @property
    def schedule_display(self) -> str:
        if self.retest_cadence == Cadence.OFF:
            return "Off"
        when = f"{self.retest_time:%H:%M} {self.retest_timezone}"
        if self.retest_cadence == Cadence.DAILY:
            return f"Daily at {when}"
        return f"Weekly on {dt.date(2024, 1, 1 + self.retest_weekday):%A}s at {when}"


BU_LEADER_NEEDS_UNIT = "A BU leader names the business unit they speak for."

# What a member hears who gives an item a name its siblings already have: said by the item's
# form, and by the save that loses the race when two members create the same title at once.
DUPLICATE_CHOICE_TITLE = "Another strategic choice of this plan has this title."
DUPLICATE_STATEMENT = "This choice has an assumption with this statement already."
DUPLICATE_INITIATIVE_TITLE = "Another initiative of this plan has this title."
DUPLICATE_STAGE_NAME = "The plan has a stage of this name already."


def display_name(user: AbstractUser) -> str:
    """How the app names a person: their full name, else their username."""
    return user.get_full_name() or user.get_username()


class Membership(models.Model):
    plan = models.ForeignKey(Plan, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=20, choices=Role)
    business_unit = models.CharField(max_length=100, blank=True)
    digest_opt_out = models.BooleanField(
        default=False, help_text="Receives no re-test e-mails for this plan."
    )
    all_quiet_digest = models.BooleanField(
        default=False, help_text="Also receives a weekly e-mail when nothing changed."
    )
    joined_at = models.DateTimeField(auto_now_add=True)
    last_quiet_digest_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["plan", "user"], name="one_membership_per_user_and_plan"
            ),
            models.CheckConstraint(condition=Q(role__in=Role.values), name="membership_role_valid"),
            models.CheckConstraint(
                condition=~Q(role=Role.BU_LEADER) | ~Q(business_unit=""),
                name="bu_leader_names_business_unit",
                violation_error_message=BU_LEADER_NEEDS_UNIT,
            ),
        ]

    def __str__(self) -> str:
        return f"{self.display_name} ({self.get_role_display()})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.business_unit = self.business_unit.strip()
        super().save(*args, **kwargs)

    @property
    def display_name(self) -> str:
        return display_name(self.user)

    @property
    def can_edit(self) -> bool:
        return self.role != Role.OBSERVER

    @property
    def can_manage(self) -> bool:
        """Facilitators manage members, stages, the event map and the schedule."""
        return self.role == Role.FACILITATOR


INVITATION_LINK_SALT = "outside-in.invitation"


class InvitationQuerySet(models.QuerySet):
    def open(self) -> InvitationQuerySet:
        """Neither accepted, declined nor withdrawn (an expired one is open: it can be resent)."""
        return self.filter(
            accepted_at__isnull=True, declined_at__isnull=True, revoked_at__isnull=True
        )


class Invitation(models.Model):
    """An invitation to join a plan, sent to an e-mail address. Joining is the invited person's
    own act: accepting it creates their membership. Inviting looks up no account, so it tells the
    facilitator nothing about whether the address has one."""

    plan = models.ForeignKey(Plan, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField(max_length=254)
    role = models.CharField(max_length=20, choices=Role)
    business_unit = models.CharField(max_length=100, blank=True)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Random, replaced at each sending; the e-mailed link carries it signed with SECRET_KEY, so
    # neither a copy of the database nor an old e-mail is enough to join.
    token = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="accepted_invitations",
    )
    declined_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = InvitationQuerySet.as_manager()

    class Meta:
        ordering = ["email", "id"]
        constraints = [
            models.UniqueConstraint(
                Lower("email"),
                "plan",
                condition=Q(accepted_at__isnull=True, declined_at__isnull=True)
                & Q(revoked_at__isnull=True),
                name="one_open_invitation_per_address_and_plan",
            ),
            models.CheckConstraint(condition=Q(role__in=Role.values), name="invitation_role_valid"),
            models.CheckConstraint(
                condition=~Q(role=Role.BU_LEADER) | ~Q(business_unit=""),
                name="invitation_bu_leader_names_business_unit",
                violation_error_message=BU_LEADER_NEEDS_UNIT,
            ),
        ]

    def __str__(self) -> str:
        return f"{self.email} ({self.role_display})"

    @property
    def role_display(self) -> str:
        """“CMO”, or “BU leader for Online”."""
        role = Role(self.role).label
        return f"{role} for {self.business_unit}" if self.business_unit else role

    def link_token(self) -> str:
        """What the e-mailed link carries: this invitation and its current token, signed."""
        return signing.Signer(salt=INVITATION_LINK_SALT).sign(f"{self.pk}.{self.token}")

    def state(self, now: dt.datetime) -> str:
        """pending, accepted, declined, revoked or expired."""
        if self.accepted_at:
            return "accepted"
        if self.declined_at:
            return "declined"
        if self.revoked_at:
            return "revoked"
        return "expired" if self.expires_at <= now else "pending"
