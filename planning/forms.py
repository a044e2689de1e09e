from __future__ import annotations

import json
import math
from decimal import Decimal
from functools import cached_property
from typing import Any

from django import forms
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import UserCreationForm
from django.db.models import Q

from lifecycle.models import EventMapping, Stage

from .models import (
    BU_LEADER_NEEDS_UNIT,
    DUPLICATE_CHOICE_TITLE,
    DUPLICATE_INITIATIVE_TITLE,
    DUPLICATE_STAGE_NAME,
    DUPLICATE_STATEMENT,
    METRIC_PARAMS,
    PROPORTION_METRICS,
    Assumption,
    BTInitiative,
    Membership,
    Plan,
    Role,
    StrategicChoice,
    validate_one_line,
    validate_plan_slug,
)
from .models.items import PARAM_LABELS


class ScheduleForm(forms.ModelForm):
    retest_weekday = forms.TypedChoiceField(
        label="Weekday",
        coerce=int,
        choices=[
            (i, day.capitalize())
            for i, day in enumerate(
                ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
            )
        ],
        help_text="For a weekly re-test.",
    )

    class Meta:
        model = Plan
        fields = list(Plan.SCHEDULE_FIELDS)
        labels = {
            "retest_cadence": "Re-test",
            "retest_time": "Time of day",
            "retest_timezone": "Time zone",
        }
        widgets = {"retest_time": forms.TimeInput(attrs={"type": "time"}, format="%H:%M")}
        help_texts = {"retest_timezone": "For example Europe/Paris, America/New_York or UTC."}


class PeriodForm(forms.ModelForm):
    """The plan's period: customer figures and assumption history are drawn per month or week."""

    class Meta:
        model = Plan
        fields = ["period"]
        labels = {"period": "Draw customer figures and assumption history per"}
        help_texts = {"period": "Calendar months, or ISO weeks (Monday to Sunday), in UTC."}


class EmailPreferencesForm(forms.ModelForm):
    receive_digests = forms.BooleanField(
        label="E-mail me when a scheduled re-test changes an assumption's status", required=False
    )

    class Meta:
        model = Membership
        fields = ["all_quiet_digest"]
        labels = {"all_quiet_digest": "Also e-mail me once a week when nothing changed"}

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["receive_digests"].initial = not self.instance.digest_opt_out

    def save(self, commit: bool = True) -> Membership:
        self.instance.digest_opt_out = not self.cleaned_data["receive_digests"]
        return super().save(commit)


class NewPlanForm(forms.Form):
    name = forms.CharField(
        label="Name", max_length=200, required=False, validators=[validate_one_line]
    )
    slug = forms.SlugField(
        label="Short name for links",
        max_length=80,
        required=False,
        help_text="Letters, digits and hyphens, e.g. fy2027-growth.",
        validators=[validate_plan_slug],
    )
    plan_file = forms.FileField(
        label="Or start from a plan file",
        required=False,
        help_text="A plan exported from Outside-In (JSON).",
    )

    def clean_plan_file(self):
        upload = self.cleaned_data.get("plan_file")
        # Before it is read: a plan file is read whole, in this request.
        if upload and (problem := plan_file_too_large(upload.size)):
            raise forms.ValidationError(problem)
        return upload

    def clean(self):
        cleaned = super().clean()
        chosen = cleaned.get("plan_file") or "plan_file" in self.errors
        if not chosen and not (cleaned.get("name") and cleaned.get("slug")):
            raise forms.ValidationError(
                "Give the plan a name and a short name, or choose a plan file."
            )
        slug = cleaned.get("slug")
        if slug and not cleaned.get("plan_file") and Plan.objects.filter(slug=slug).exists():
            self.add_error("slug", "A plan already uses this short name; choose another.")
        return cleaned


OBSERVERS_OWN_NOTHING = (
    "An observer cannot own an item: choose a member who edits the plan, or no owner."
)


class ItemForm(forms.ModelForm):
    """An editable item's form: choices of members, stages and choices come from its plan. An
    owner is a member who edits the plan, never an observer (one who owned the item before
    they became an observer is shown, and must be replaced to save)."""

    def __init__(self, *args, plan: Plan, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.plan = plan
        if "owner" in self.fields:
            owner = self.fields["owner"]
            current = getattr(self.instance, "owner_id", None)
            owners = plan.memberships.filter(~Q(role=Role.OBSERVER) | Q(pk=current))
            owner.queryset = owners.select_related("user").order_by("user__first_name")  # type: ignore[attr-defined]
            owner.label_from_instance = lambda m: f"{m.display_name} ({m.get_role_display()})"  # type: ignore[attr-defined]
            owner.empty_label = "No owner yet"  # type: ignore[attr-defined]
            owner.help_text = "Who answers for it: a member who edits the plan."
        if "stages" in self.fields:
            self.fields["stages"].queryset = plan.stages.all()  # type: ignore[attr-defined]
        if "choices" in self.fields:
            self.fields["choices"].queryset = plan.choices.all()  # type: ignore[attr-defined]

    def clean_owner(self) -> Membership | None:
        owner = self.cleaned_data.get("owner")
        if owner is not None and owner.role == Role.OBSERVER:
            raise forms.ValidationError(OBSERVERS_OWN_NOTHING)
        return owner

    def validate_constraints(self) -> None:
        """Not run again here: every check constraint of the board's models mirrors a field
        validator or a `clean()` rule this form runs already, and a unique name is checked by
        the form's own `clean_<name>` (and, in a race, by the database: see
        `services.editing._save_unique`). Django would ask the database once per constraint,
        seven queries for an assumption, on every save and for every item of a plan file."""

    def values(self) -> dict:
        """The submitted values as plain JSON values, like `services.snapshot`."""
        values = {}
        model = self._meta.model  # type: ignore[union-attr]
        for name in self._meta.fields:  # type: ignore[union-attr]
            value = self.cleaned_data.get(name)
            field = model._meta.get_field(name)
            if field.many_to_many:
                value = sorted(v.pk for v in value or [])
            elif field.is_relation:
                value = value.pk if value else None
            elif isinstance(value, Decimal):
                # As the database gives it back (250000 → "250000.00"), so that comparing it
                # with a snapshot compares text.
                places = field.decimal_places
                value = str(value.quantize(Decimal(1).scaleb(-places)))
            values[name] = value
        return values


class ChoiceForm(ItemForm):
    class Meta:
        model = StrategicChoice
        fields = ["title", "stages", "owner", "business_unit", "horizon", "status", "rationale"]
        labels = {"stages": "Stages", "business_unit": "Business unit"}
        widgets = {
            "stages": forms.CheckboxSelectMultiple,
            "rationale": forms.Textarea(attrs={"rows": 3}),
        }

    def clean_title(self) -> str:
        title = self.cleaned_data["title"].strip()
        others = self.plan.choices.filter(title=title).exclude(pk=self.instance.pk)
        if others.exists():
            raise forms.ValidationError(DUPLICATE_CHOICE_TITLE)
        return title


SHARE_OUT_OF_RANGE = "A share is between 0% and 100%: type 40 for 40%."
SHARE_OUT_OF_RANGE_IN_FILE = (
    "{metric} is a share: its threshold is between 0 and 1 in a plan file (0.30 for 30%)."
)


def percent_of(share: float) -> str:
    """A stored fraction as typed in percent: 0.4 → "40", 0.273 → "27.3" (no float noise)."""
    return format((Decimal(repr(share)) * 100).normalize(), "f")


def share_of(percent: float) -> float:
    """A typed percentage as stored: 40 → 0.4; the inverse of `percent_of`, digit for digit."""
    return float(Decimal(repr(percent)) / 100)


def _param_field(name: str, kind: str, form: AssumptionForm) -> forms.Field:
    label = PARAM_LABELS[name]
    if kind == "days":
        return forms.IntegerField(label=label, required=False, min_value=1)
    if kind == "stage":
        # The plan's stages, read when the select is drawn or a stage is chosen (not for a
        # plan file, whose params come as one object).
        return forms.ChoiceField(label=label, required=False, choices=form.stage_choices)
    return forms.CharField(
        label=label, required=False, widget=forms.TextInput(attrs={"list": form.event_types_id})
    )


def score_field(label: str, help_text: str) -> forms.IntegerField:
    """A score from 1 to 5 (importance, evidence): the input offers no other, and a value
    outside says so in words."""
    out_of_range = f"{label} is a whole number from 1 to 5."
    return forms.IntegerField(
        label=label,
        min_value=1,
        max_value=5,
        help_text=help_text,
        error_messages={
            "required": f"Give the {label.lower()}, from 1 to 5.",
            "invalid": out_of_range,
            "min_value": out_of_range,
            "max_value": out_of_range,
        },
        widget=forms.NumberInput(attrs={"step": 1, "inputmode": "numeric"}),
    )


# Each metric parameter has its own input, made from its kind (METRIC_PARAMS) and its words
# (PARAM_LABELS); `params` is assembled from them.
PARAM_KINDS = {name: kind for spec in METRIC_PARAMS.values() for name, (kind, _, _) in spec.items()}


class AssumptionForm(ItemForm):
    """An assumption as a person types it on the board: a share's thresholds in percent (40 for
    40%), stored as fractions (0.4)."""

    params = forms.JSONField(label="Test parameters", required=False, widget=forms.HiddenInput)

    # What a person types: percent. A plan file (AssumptionDataForm) writes fractions.
    shares_in_percent = True

    class Meta:
        model = Assumption
        fields = ["statement", "importance", "evidence", "owner", *Assumption.TEST_FIELDS]
        labels = {
            "metric": "Test: metric",
            "comparator": "Comparator",
            "threshold_high": "Upper threshold",
            "min_sample": "Minimum sample",
            "window_days": "Window (days)",
        }
        widgets = {"statement": forms.Textarea(attrs={"rows": 2})}

    importance = score_field(
        "Importance", "How much the choice rests on it: 1 = a little, 5 = entirely."
    )
    evidence = score_field("Evidence", "How much we already know: 1 = a hunch, 5 = proven.")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # What the page's script needs to follow the chosen metric (static/js/forms.js).
        select = self.fields["metric"].widget
        select.attrs["data-metric-params"] = json.dumps(
            {metric: list(spec) for metric, spec in METRIC_PARAMS.items()}
        )
        select.attrs["data-share-metrics"] = json.dumps(sorted(PROPORTION_METRICS))
        self.event_types_id = f"event-types-{self.instance.pk or 'new'}"
        params = self.instance.params or {}
        for name, kind in PARAM_KINDS.items():
            field = self.fields[f"param_{name}"] = _param_field(name, kind, self)
            if f"param_{name}" not in self.initial:
                field.initial = params.get(name)
        if not self.is_bound and self.shares_in_percent and self.is_share:
            for name in ("threshold", "threshold_high"):
                if self.initial.get(name) is not None:
                    self.initial[name] = percent_of(float(self.initial[name]))

    @property
    def is_share(self) -> bool:
        """Whether the chosen metric's value is a share (its thresholds in percent)."""
        metric = self["metric"].value()
        return metric in PROPORTION_METRICS

    @cached_property
    def event_types(self) -> list[str]:
        """The plan's known event types (its event map), offered as the event inputs' list."""
        return list(
            EventMapping.objects.filter(plan=self.plan)
            .order_by("event_type")
            .values_list("event_type", flat=True)
        )

    @cached_property
    def stage_names(self) -> list[str]:
        return list(self.plan.stages.order_by("position", "id").values_list("name", flat=True))

    def stage_choices(self) -> list[tuple[str, str]]:
        names = self.stage_names
        chosen = self["param_stage"].value()
        # A stage renamed or removed since: still shown, and the model says what is wrong.
        gone = [chosen] if chosen and chosen not in names else []
        return [("", "Choose a stage…"), *((n, n) for n in [*names, *gone])]

    def clean(self):
        cleaned = super().clean()
        metric = cleaned.get("metric")
        wanted = METRIC_PARAMS.get(metric, {}) if metric else {}
        cleaned["params"] = {
            name: cleaned.get(f"param_{name}")
            for name in wanted
            if cleaned.get(f"param_{name}") not in (None, "")
        }
        for name in ("segment", "channel"):
            cleaned[name] = (cleaned.get(name) or "").strip()
        if not metric:
            cleaned["comparator"] = ""
            cleaned["threshold"] = cleaned["threshold_high"] = None
            cleaned["params"] = {}
        elif cleaned.get("comparator") != "between":
            cleaned["threshold_high"] = None
        if metric in PROPORTION_METRICS:
            self._clean_shares(metric, cleaned)
        return cleaned

    def _clean_shares(self, metric: str, cleaned: dict) -> None:
        """A share's thresholds as stored (fractions), each refused outside 0–100%."""
        for name in ("threshold", "threshold_high"):
            value = cleaned.get(name)
            if value is None:
                continue
            if self.shares_in_percent:
                value = share_of(value)
            cleaned[name] = value
            if not 0 <= value <= 1:
                message = (
                    SHARE_OUT_OF_RANGE
                    if self.shares_in_percent
                    else SHARE_OUT_OF_RANGE_IN_FILE.format(metric=metric)
                )
                self.add_error(name, message)
                # Kept, so that the model does not also say that the test lacks a threshold.
                cleaned[name] = value

    def clean_statement(self) -> str:
        statement = self.cleaned_data["statement"].strip()
        siblings = Assumption.objects.filter(choice_id=self.instance.choice_id, statement=statement)
        if self.instance.choice_id and siblings.exclude(pk=self.instance.pk).exists():
            raise forms.ValidationError(DUPLICATE_STATEMENT)
        return statement

    def param_fields(self):
        return [self[f"param_{name}"] for name in PARAM_KINDS]


class InitiativeForm(ItemForm):
    class Meta:
        model = BTInitiative
        fields = ["title", "stages", "choices", "cost_estimate", "status"]
        labels = {"cost_estimate": "Cost estimate", "choices": "Serves these choices"}
        widgets = {"stages": forms.CheckboxSelectMultiple, "choices": forms.CheckboxSelectMultiple}

    def clean_title(self) -> str:
        title = self.cleaned_data["title"].strip()
        if self.plan.bt_initiatives.filter(title=title).exclude(pk=self.instance.pk).exists():
            raise forms.ValidationError(DUPLICATE_INITIATIVE_TITLE)
        return title


class StageForm(ItemForm):
    class Meta:
        model = Stage
        fields = ["name"]
        labels = {"name": "Stage name"}

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if self.plan.stages.filter(name__iexact=name).exclude(pk=self.instance.pk).exists():
            raise forms.ValidationError(DUPLICATE_STAGE_NAME)
        return name


class BusinessUnitRule:
    """A BU leader names the business unit they speak for (DOMAIN §1), said on the field."""

    def clean(self):
        cleaned = super().clean()  # type: ignore[misc]
        if (
            cleaned.get("role") == Role.BU_LEADER
            and not (cleaned.get("business_unit") or "").strip()
        ):
            self.add_error("business_unit", BU_LEADER_NEEDS_UNIT)  # type: ignore[attr-defined]
        return cleaned


class InvitationForm(BusinessUnitRule, forms.Form):
    email = forms.EmailField(
        label="E-mail",
        max_length=254,
        help_text="They get an e-mail with a link, and join the plan when they accept.",
    )
    # No role is preselected: sending the form as it opens must not invite a CMO.
    role = forms.ChoiceField(
        label="Role",
        choices=[("", "Choose a role…"), *Role.choices],
        error_messages={"required": "Choose the role they will have in this plan."},
    )
    business_unit = forms.CharField(label="Business unit", max_length=100, required=False)


class AccountForm(UserCreationForm):
    """An account set up from an invitation: its e-mail is the invited address."""

    class Meta(UserCreationForm.Meta):
        model = get_user_model()
        fields = ("username", "first_name", "last_name")
        labels = {"username": "User name", "first_name": "First name", "last_name": "Last name"}

    def __init__(self, *args, email: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Compared with the password, so that it cannot be the address itself.
        self.instance.email = email
        self.fields["first_name"].required = True
        for name in ("first_name", "last_name"):
            self.fields[name].validators.append(validate_one_line)


class MembershipForm(BusinessUnitRule, forms.ModelForm):
    class Meta:
        model = Membership
        fields = ["role", "business_unit"]
        labels = {"role": "Role", "business_unit": "Business unit"}


# --- plan files (planning/planfile): the same forms, given data instead of a page's inputs ---


class PlanForm(forms.ModelForm):
    """A plan's name, short name and description, as a plan file gives them."""

    class Meta:
        model = Plan
        fields = ["name", "slug", "description"]


class AssumptionDataForm(AssumptionForm):
    """An assumption given as data (a plan file) rather than typed into the board: its test's
    `params` come as one object, which the model checks (Assumption.clean) as it checks the
    board's separate inputs; a test that is given at all must name its metric; and a share's
    thresholds are fractions, as stored (DOMAIN §6: 0.30 for 30%)."""

    shares_in_percent = False

    def __init__(self, *args: Any, tested: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["metric"].required = tested

    def clean(self):
        params = self.cleaned_data.get("params")
        cleaned = super().clean()
        if cleaned.get("metric"):
            cleaned["params"] = params
        return cleaned


def size_in_words(size: int, *, up: bool = False) -> str:
    """A size in words; a file's size is rounded up, so that one byte too many never reads as
    the limit itself."""
    if size < 1024:
        return f"{size:,} bytes"
    unit, name = (1024, "KB") if size < 1024**2 else (1024**2, "MB")
    tenths = (math.ceil if up else math.floor)(size * 10 / unit) / 10
    return f"{tenths:,.1f}".removesuffix(".0") + f" {name}"


def plan_file_too_large(size: int) -> str | None:
    """What to say of a plan file of `size` bytes, None when it fits PLANFILE_MAX_BYTES. Said of
    an upload before it is read, and of a file the plan-file loader reads."""
    limit = settings.PLANFILE_MAX_BYTES
    if size <= limit:
        return None
    return (
        f"This plan file is {size_in_words(size, up=True)}; "
        f"at most {size_in_words(limit)} are allowed."
    )
