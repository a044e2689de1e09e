"""Plans, their members, strategic choices, assumptions, BT initiatives, comments and activity."""

from __future__ import annotations

import datetime as dt
import unicodedata
import zoneinfo
from typing import Any

from django.conf import settings
from django.core import signing
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
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
        return self.user.get_full_name() or self.user.get_username()

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


class Horizon(models.TextChoices):
    NOW = "now", "Now"
    NEXT = "next", "Next"
    LATER = "later", "Later"


class ChoiceStatus(models.TextChoices):
    PROPOSED = "proposed", "Proposed"
    ADOPTED = "adopted", "Adopted"
    REJECTED = "rejected", "Rejected"
    RETIRED = "retired", "Retired"


class StrategicChoice(models.Model):
    plan = models.ForeignKey(Plan, on_delete=models.CASCADE, related_name="choices")
    title = models.CharField(max_length=200, validators=[validate_one_line])
    stages = models.ManyToManyField("lifecycle.Stage", related_name="choices", blank=True)
    owner = models.ForeignKey(
        Membership, null=True, blank=True, on_delete=models.SET_NULL, related_name="owned_choices"
    )
    business_unit = models.CharField(max_length=100, blank=True)
    horizon = models.CharField(max_length=10, choices=Horizon, default=Horizon.NOW)
    status = models.CharField(max_length=10, choices=ChoiceStatus, default=ChoiceStatus.PROPOSED)
    rationale = models.TextField(blank=True)
    position = models.PositiveIntegerField(default=0)
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["plan", "title"], name="choice_title_unique_in_plan"),
            models.CheckConstraint(condition=~Q(title=""), name="choice_title_not_blank"),
            models.CheckConstraint(
                condition=Q(horizon__in=Horizon.values), name="choice_horizon_valid"
            ),
            models.CheckConstraint(
                condition=Q(status__in=ChoiceStatus.values), name="choice_status_valid"
            ),
        ]

    def __str__(self) -> str:
        return self.title

    def clean(self) -> None:
        if self.owner and self.plan_id and self.owner.plan_id != self.plan_id:
            raise ValidationError({"owner": "The owner must be a member of this plan."})


class Metric(models.TextChoices):
    ACTIVE_CUSTOMERS = "active_customers", "Active customers"
    REPEAT_RATE = "repeat_rate", "Repeat rate"
    CONVERSION_RATE = "conversion_rate", "Conversion rate"
    CHURN_RATE = "churn_rate", "Churn rate"
    STAGE_REACH = "stage_reach", "Stage reach"
    MEAN_VALUE = "mean_value", "Mean value"
    TOTAL_VALUE = "total_value", "Total value"
    NPS = "nps", "Net Promoter Score"


class Comparator(models.TextChoices):
    AT_LEAST = ">=", "at least"
    AT_MOST = "<=", "at most"
    BETWEEN = "between", "between"


# Each metric's parameters (DOMAIN §5): name → (kind, required, default).
# Kept here, beside the test it validates; `insights` computes the metrics.
METRIC_PARAMS: dict[str, dict[str, tuple[str, bool, Any]]] = {
    Metric.ACTIVE_CUSTOMERS: {"event_type": ("event_type", False, None)},
    Metric.REPEAT_RATE: {
        "event_type": ("event_type", True, None),
        "within_days": ("days", True, None),
    },
    Metric.CONVERSION_RATE: {
        "from_event": ("event_type", True, None),
        "to_event": ("event_type", True, None),
        "within_days": ("days", True, None),
    },
    Metric.CHURN_RATE: {"inactive_days": ("days", True, None)},
    Metric.STAGE_REACH: {"stage": ("stage", True, None)},
    Metric.MEAN_VALUE: {"event_type": ("event_type", True, None)},
    Metric.TOTAL_VALUE: {"event_type": ("event_type", True, None)},
    Metric.NPS: {"event_type": ("event_type", False, "survey")},
}


# Metrics whose value is a share of customers, shown as a percentage.
PROPORTION_METRICS = {
    Metric.REPEAT_RATE,
    Metric.CONVERSION_RATE,
    Metric.CHURN_RATE,
    Metric.STAGE_REACH,
}


class AssumptionStatus(models.TextChoices):
    UNTESTED = "untested", "Untested"
    INSUFFICIENT_DATA = "insufficient_data", "Insufficient data"
    HOLDS = "holds", "Holds"
    AT_RISK = "at_risk", "At risk"
    BROKEN = "broken", "Broken"
    ERROR = "error", "Error"


def clean_metric_params(metric: str, params: Any, stage_names: list[str] | None = None) -> dict:
    """Check a test's params against its metric; return them normalised or raise ValidationError."""
    if metric not in METRIC_PARAMS:
        raise ValidationError(
            f"“{metric}” is not a metric; choose one of {', '.join(Metric.values)}."
        )
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise ValidationError("The parameters must be an object of names and values.")
    spec = METRIC_PARAMS[metric]
    unknown = sorted(set(params) - set(spec))
    if unknown:
        raise ValidationError(
            f"{metric} takes no parameter {', '.join(unknown)}; it takes "
            f"{', '.join(spec) or 'none'}."
        )
    cleaned: dict[str, Any] = {}
    for name, (kind, required, default) in spec.items():
        value = params.get(name)
        if value is None or value == "":
            if required:
                raise ValidationError(f"{metric} needs “{name}”.")
            if default is not None:
                cleaned[name] = default
            continue
        if kind == "days":
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValidationError(f"“{name}” must be a whole number of days, at least 1.")
            cleaned[name] = value
        elif kind == "event_type":
            if not isinstance(value, str) or not value.strip():
                raise ValidationError(f"“{name}” must be an event type such as “purchase”.")
            cleaned[name] = value.strip().lower()
        else:  # stage
            if not isinstance(value, str) or not value.strip():
                raise ValidationError(f"“{name}” must name a stage of the plan.")
            if stage_names is not None and value.lower() not in {s.lower() for s in stage_names}:
                raise ValidationError(
                    f"“{value}” is not a stage of this plan ({', '.join(stage_names)})."
                )
            cleaned[name] = value
    return cleaned


class Assumption(models.Model):
    # The fields of the optional test, in the order forms, files and the admin show them.
    TEST_FIELDS = (
        "metric",
        "params",
        "comparator",
        "threshold",
        "threshold_high",
        "min_sample",
        "segment",
        "channel",
        "window_days",
    )

    choice = models.ForeignKey(
        StrategicChoice, on_delete=models.CASCADE, related_name="assumptions"
    )
    statement = models.CharField(max_length=400)
    importance = models.PositiveSmallIntegerField(
        default=3, validators=[MinValueValidator(1), MaxValueValidator(5)]
    )
    evidence = models.PositiveSmallIntegerField(
        default=1,
        validators=[MinValueValidator(1), MaxValueValidator(5)],
        help_text="How much we already know: 1 = a hunch, 5 = proven.",
    )
    owner = models.ForeignKey(
        Membership,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="owned_assumptions",
    )
    position = models.PositiveIntegerField(default=0)
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    # The optional test (DOMAIN §5): metric(params) comparator threshold. No metric: tracked by hand.
    metric = models.CharField(max_length=30, choices=Metric, blank=True)
    params = models.JSONField(default=dict, blank=True)
    comparator = models.CharField(max_length=10, choices=Comparator, blank=True)
    threshold = models.FloatField(null=True, blank=True)
    threshold_high = models.FloatField(
        null=True, blank=True, help_text="Upper bound, for “between”."
    )
    min_sample = models.PositiveIntegerField(default=30, validators=[MinValueValidator(1)])
    segment = models.CharField(max_length=100, blank=True)
    channel = models.CharField(max_length=100, blank=True)
    window_days = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1)]
    )

    # The latest verdict, written by `insights` after each run.
    status = models.CharField(
        max_length=20, choices=AssumptionStatus, default=AssumptionStatus.UNTESTED
    )
    observed = models.FloatField(null=True, blank=True)
    sample_size = models.PositiveIntegerField(null=True, blank=True)
    ci_low = models.FloatField(null=True, blank=True)
    ci_high = models.FloatField(null=True, blank=True)
    last_run_at = models.DateTimeField(null=True, blank=True)
    # Set while a "Re-test now" of this assumption waits for a worker: more clicks join it.
    retest_requested_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["position", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["choice", "statement"], name="assumption_statement_unique_in_choice"
            ),
            models.CheckConstraint(
                condition=~Q(statement=""), name="assumption_statement_not_blank"
            ),
            models.CheckConstraint(
                condition=Q(importance__gte=1, importance__lte=5), name="assumption_importance_1_5"
            ),
            models.CheckConstraint(
                condition=Q(evidence__gte=1, evidence__lte=5), name="assumption_evidence_1_5"
            ),
            models.CheckConstraint(
                condition=Q(metric="") | Q(metric__in=Metric.values), name="assumption_metric_valid"
            ),
            # A test is whole: a metric, a comparator and its threshold(s), or none of them.
            models.CheckConstraint(
                condition=(
                    Q(metric="", comparator="", threshold__isnull=True, threshold_high__isnull=True)
                    | (
                        ~Q(metric="")
                        & (
                            Q(
                                comparator__in=[">=", "<="],
                                threshold__isnull=False,
                                threshold_high__isnull=True,
                            )
                            | Q(
                                comparator="between",
                                threshold__isnull=False,
                                threshold_high__isnull=False,
                                threshold__lte=models.F("threshold_high"),
                            )
                        )
                    )
                ),
                name="assumption_test_complete",
            ),
            models.CheckConstraint(
                condition=Q(min_sample__gte=1), name="assumption_min_sample_positive"
            ),
            models.CheckConstraint(
                condition=Q(window_days__isnull=True) | Q(window_days__gte=1),
                name="assumption_window_positive",
            ),
            models.CheckConstraint(
                condition=Q(status__in=AssumptionStatus.values), name="assumption_status_valid"
            ),
        ]

    def __str__(self) -> str:
        return self.statement

    @property
    def has_test(self) -> bool:
        return bool(self.metric)

    @property
    def thresholds(self) -> float | list[float] | None:
        """The threshold as the plan file writes it: a number, or [low, high] for “between”."""
        if not self.has_test:
            return None
        if self.comparator == Comparator.BETWEEN:
            return [self.threshold, self.threshold_high]  # type: ignore[list-item]
        return self.threshold

    def format_value(self, value: float | None) -> str:
        """A metric value as a CMO reads it: 27.4% for a share, 41 for a count or an NPS."""
        if value is None:
            return "—"
        if self.metric in PROPORTION_METRICS:
            return f"{value * 100:.1f}%"
        if self.metric in {Metric.ACTIVE_CUSTOMERS, Metric.NPS}:
            return f"{value:,.0f}"
        return f"{value:,.2f}"

    @property
    def observed_display(self) -> str:
        return self.format_value(self.observed)

    @property
    def target_display(self) -> str:
        """The test's threshold in words: “≥ 30.0%”, “between 40 and 60”."""
        if not self.has_test or self.threshold is None:
            return ""
        if self.comparator == Comparator.BETWEEN:
            low, high = self.format_value(self.threshold), self.format_value(self.threshold_high)
            return f"between {low} and {high}"
        sign = "≥" if self.comparator == Comparator.AT_LEAST else "≤"
        return f"{sign} {self.format_value(self.threshold)}"

    def test_definition(self) -> dict | None:
        if not self.has_test:
            return None
        return {
            "metric": self.metric,
            "params": self.params,
            "comparator": self.comparator,
            "threshold": self.thresholds,
            "min_sample": self.min_sample,
            "segment": self.segment or None,
            "channel": self.channel or None,
            "window_days": self.window_days,
        }

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.owner and self.choice_id and self.owner.plan_id != self.choice.plan_id:
            errors["owner"] = "The owner must be a member of this plan."
        if self.metric:
            stage_names = (
                list(self.choice.plan.stages.values_list("name", flat=True))
                if self.choice_id
                else None
            )
            try:
                self.params = clean_metric_params(self.metric, self.params, stage_names)
            except ValidationError as error:
                errors["params"] = error.messages[0]
            if not self.comparator:
                errors["comparator"] = "Choose how to compare: at least, at most or between."
            if self.threshold is None:
                errors["threshold"] = "A test needs a threshold."
            if self.comparator == Comparator.BETWEEN:
                if self.threshold_high is None:
                    errors["threshold_high"] = "“Between” needs a low and a high threshold."
                elif self.threshold is not None and self.threshold > self.threshold_high:
                    errors["threshold_high"] = "The high threshold must not be below the low one."
            elif self.threshold_high is not None:
                errors["threshold_high"] = "Only “between” takes a second threshold."
        elif self.comparator or self.threshold is not None:
            errors["metric"] = (
                "Choose a metric for the test, or clear the comparator and threshold."
            )
        if errors:
            raise ValidationError(errors)


class InitiativeStatus(models.TextChoices):
    PROPOSED = "proposed", "Proposed"
    PLANNED = "planned", "Planned"
    IN_PROGRESS = "in_progress", "In progress"
    DONE = "done", "Done"
    CANCELLED = "cancelled", "Cancelled"


class BTInitiative(models.Model):
    """An investment on the CIO's business-technology agenda."""

    plan = models.ForeignKey(Plan, on_delete=models.CASCADE, related_name="bt_initiatives")
    title = models.CharField(max_length=200, validators=[validate_one_line])
    stages = models.ManyToManyField("lifecycle.Stage", related_name="bt_initiatives", blank=True)
    choices = models.ManyToManyField(StrategicChoice, related_name="bt_initiatives", blank=True)
    cost_estimate = models.DecimalField(
        max_digits=14, decimal_places=2, null=True, blank=True, validators=[MinValueValidator(0)]
    )
    status = models.CharField(
        max_length=20, choices=InitiativeStatus, default=InitiativeStatus.PROPOSED
    )
    position = models.PositiveIntegerField(default=0)
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["position", "id"]
        verbose_name = "BT initiative"
        constraints = [
            models.UniqueConstraint(
                fields=["plan", "title"], name="initiative_title_unique_in_plan"
            ),
            models.CheckConstraint(condition=~Q(title=""), name="initiative_title_not_blank"),
            models.CheckConstraint(
                condition=Q(cost_estimate__isnull=True) | Q(cost_estimate__gte=0),
                name="initiative_cost_not_negative",
            ),
            models.CheckConstraint(
                condition=Q(status__in=InitiativeStatus.values), name="initiative_status_valid"
            ),
        ]

    def __str__(self) -> str:
        return self.title


class Comment(models.Model):
    """A member's comment on a choice or an assumption (exactly one of them)."""

    plan = models.ForeignKey(Plan, on_delete=models.CASCADE, related_name="comments")
    choice = models.ForeignKey(
        StrategicChoice, null=True, blank=True, on_delete=models.CASCADE, related_name="comments"
    )
    assumption = models.ForeignKey(
        Assumption, null=True, blank=True, on_delete=models.CASCADE, related_name="comments"
    )
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="comments"
    )
    body = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(choice__isnull=False, assumption__isnull=True)
                    | Q(choice__isnull=True, assumption__isnull=False)
                ),
                name="comment_on_choice_or_assumption",
            ),
            models.CheckConstraint(condition=~Q(body=""), name="comment_body_not_blank"),
        ]

    def __str__(self) -> str:
        return self.body[:60]


class Activity(models.Model):
    """One change to a plan: who, when, what, before and after. Written, never edited."""

    class Action(models.TextChoices):
        CREATED = "created", "created"
        UPDATED = "updated", "updated"
        DELETED = "deleted", "deleted"
        MOVED = "moved", "moved"
        REVERTED = "reverted", "reverted"
        IMPORTED = "imported", "imported"
        TESTED = "tested", "re-tested"
        SENT = "sent", "sent"
        DECLINED = "declined", "declined"

    plan = models.ForeignKey(Plan, on_delete=models.CASCADE, related_name="activities")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="activities",
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    action = models.CharField(max_length=20, choices=Action)
    item_type = models.CharField(max_length=40)
    item_id = models.BigIntegerField(null=True, blank=True)
    item_label = models.CharField(max_length=400, blank=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    reverts = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="reverted_by"
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "activities"
        indexes = [
            models.Index(fields=["plan", "-created_at"], name="activity_plan_recent"),
            models.Index(fields=["plan", "item_type", "item_id"], name="activity_plan_item"),
        ]

    def __str__(self) -> str:
        who = self.actor.get_username() if self.actor else "system"
        return f"{who} {self.action} {self.item_type} “{self.item_label}”"


class Presence(models.Model):
    """One open board: who has the plan open right now, and what they are editing."""

    plan = models.ForeignKey(Plan, on_delete=models.CASCADE, related_name="presences")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    connection = models.CharField(max_length=40, unique=True)
    editing = models.CharField(max_length=80, blank=True)
    last_seen = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["last_seen"]
        indexes = [models.Index(fields=["plan", "last_seen"], name="presence_plan_seen")]

    def __str__(self) -> str:
        return f"{self.user} on {self.plan}"


class PendingJob(models.Model):
    """A background job the broker could not take when it was asked to (Redis down): kept here,
    after the change that asked for it was saved, and sent by the beat once the broker is back."""

    task = models.CharField(max_length=200)
    args = models.JSONField(default=list)
    kwargs = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)
    attempts = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.task}{tuple(self.args)}"
