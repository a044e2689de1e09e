"""What a plan holds: strategic choices, the assumptions they rest on and their tests, BT
initiatives."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from ..wording import with_article
from .plans import (
    Membership,
    Plan,
    validate_one_line,
)


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

# Each parameter in words, as the assumption form labels it: the form's inputs follow from
# METRIC_PARAMS and these.
PARAM_LABELS: dict[str, str] = {
    "event_type": "Event type",
    "within_days": "Within how many days",
    "from_event": "From event",
    "to_event": "To event",
    "inactive_days": "Inactive for how many days",
    "stage": "Stage",
}

# A test in one sentence, per metric: its parameters by name (`a_` before a name: the value after
# "a" or "an", whichever it takes), {target} the comparison in words.
TEST_SENTENCES: dict[str, str] = {
    Metric.ACTIVE_CUSTOMERS: "The number of customers with {a_event_type} event is {target}",
    Metric.REPEAT_RATE: (
        "The share of new customers with another {event_type} event within {within_days} days "
        "of their first is {target}"
    ),
    Metric.CONVERSION_RATE: (
        "The share of customers with {a_from_event} event who have {a_to_event} event within "
        "{within_days} days is {target}"
    ),
    Metric.CHURN_RATE: (
        "The share of customers inactive for {inactive_days} days or more (churned) is {target}"
    ),
    Metric.STAGE_REACH: "The share of active customers who reach the {stage} stage is {target}",
    Metric.MEAN_VALUE: "The mean value of {a_event_type} event is {target}",
    Metric.TOTAL_VALUE: "The total value of {event_type} events is {target}",
    Metric.NPS: "The Net Promoter Score of {event_type} events is {target}",
}
# active_customers without an event type counts every event.
ANY_ACTIVITY_SENTENCE = "The number of active customers is {target}"


class _Unnamed(dict):
    """A parameter the test does not name yet reads as an ellipsis, not as an error; `a_name`
    is the parameter after its article ("an ad_click")."""

    def __missing__(self, key: str) -> str:
        if key.startswith("a_"):
            return with_article(str(self[key.removeprefix("a_")]))
        return "…"


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


# The board's verdict filter and the plan health's counts (DOMAIN §10): each verdict, its words
# and which assumptions it selects.
VERDICTS: dict[str, tuple[str, Q]] = {
    "broken": ("Broken", Q(status=AssumptionStatus.BROKEN)),
    "at_risk": ("At risk", Q(status=AssumptionStatus.AT_RISK)),
    "drifting": ("Drifting", Q(drift_since__isnull=False)),
    "insufficient_data": ("Insufficient data", Q(status=AssumptionStatus.INSUFFICIENT_DATA)),
    "untested": ("Untested", Q(status=AssumptionStatus.UNTESTED)),
    "holds": ("Holds", Q(status=AssumptionStatus.HOLDS)),
    "error": ("Error", Q(status=AssumptionStatus.ERROR)),
}


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
    # Early warning (DOMAIN §10), written by `insights` from the history: the period the drift
    # began, toward breaking the test ("down" or "up"), and its sentence. Null: not drifting.
    drift_since = models.DateField(null=True, blank=True, editable=False)
    drift_direction = models.CharField(max_length=4, blank=True, editable=False)
    drift_message = models.CharField(max_length=300, blank=True, editable=False)
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

    @property
    def is_drifting(self) -> bool:
        return self.drift_since is not None

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

    @property
    def test_sentence(self) -> str:
        """The test in one sentence a CMO reads: “The share of new customers with another
        purchase event within 90 days of their first is at least 30.0%, in segment Retail.”"""
        if not self.has_test or self.threshold is None:
            return ""
        if self.comparator == Comparator.BETWEEN:
            high = self.format_value(self.threshold_high)
            target = f"between {self.format_value(self.threshold)} and {high}"
        else:
            target = f"{Comparator(self.comparator).label} {self.format_value(self.threshold)}"
        named = {
            name: value
            for name, (_, _, default) in METRIC_PARAMS.get(self.metric, {}).items()
            if (value := (self.params or {}).get(name) or default) not in (None, "")
        }
        template = TEST_SENTENCES.get(self.metric, "{target}")
        if self.metric == Metric.ACTIVE_CUSTOMERS and "event_type" not in named:
            template = ANY_ACTIVITY_SENTENCE
        parts = [template.format_map(_Unnamed(named, target=target))]
        if self.segment:
            parts.append(f"in segment {self.segment}")
        if self.channel:
            parts.append(f"on channel {self.channel}")
        if self.window_days and self.metric != Metric.CHURN_RATE:  # churn has its own periods
            parts.append(f"over the last {self.window_days} days")
        return ", ".join(parts) + "."

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
