"""The back-office for plans and everything in them: support, data fixes, audit."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.apps import apps
from django.contrib import admin
from django.db.models import Count, Model, QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest
from django.templatetags.static import static
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from lifecycle.admin import EventTypeForm, plan_and_name
from lifecycle.models import DEFAULT_STAGES, EventMapping, Stage

from .models import (
    Activity,
    Assumption,
    AssumptionStatus,
    BTInitiative,
    Comment,
    Invitation,
    Membership,
    PendingJob,
    Plan,
    Presence,
    StrategicChoice,
)
from .services import add_stages

# --- Shared building blocks (insights/admin.py uses them too) ---------------------------------


class HistoryAdmin(admin.ModelAdmin):
    """History is read, never written by hand: no add, no change, no delete.

    Its rows still go when what they are about is deleted (see `HistoryGoesAlongMixin`)."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class HistoryGoesAlongMixin:
    """Deleting a choice or an assumption takes its assumptions' runs with it.

    Without this the admin would refuse: it asks every cascaded object's admin for permission,
    and history admins refuse to delete."""

    admin_site: admin.AdminSite

    def get_deleted_objects(self, objs, request):
        deleted, counts, perms_needed, protected = super().get_deleted_objects(  # type: ignore[misc]
            objs, request
        )
        return deleted, counts, perms_needed - _history_names(self.admin_site), protected


def _history_names(site: admin.AdminSite) -> set[str]:
    return {
        str(model._meta.verbose_name)
        for model in apps.get_models()
        if site.is_registered(model) and isinstance(site.get_model_admin(model), HistoryAdmin)
    }


def pretty_json(value: Any) -> str:
    if value in (None, {}, []):
        return "—"
    return format_html(
        "<pre>{}</pre>", json.dumps(value, indent=2, ensure_ascii=False, default=str)
    )


def _plan_id_of(obj: Model) -> int | None:
    if isinstance(obj, Assumption):
        return obj.choice.plan_id
    return getattr(obj, "plan_id", None)


class SamePlanForm(forms.ModelForm):
    """Stages, choices and assumptions linked to an object must be in the object's own plan."""

    same_plan_fields: tuple[str, ...] = ()

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        plan = cleaned.get("plan")
        if plan is None:
            return cleaned
        for name in self.same_plan_fields:
            value = cleaned.get(name)
            if value is None:
                continue
            related = list(value) if isinstance(value, QuerySet) else [value]
            strays = [str(obj) for obj in related if _plan_id_of(obj) != plan.pk]
            if strays:
                self.add_error(name, f"Not in the plan “{plan}”: {', '.join(strays)}.")
        return cleaned


class PlanScopedAdmin(admin.ModelAdmin):
    """Stages and choices are picked among the object's plan's own.

    On the add page the plan is not known yet, so every plan's are offered, labelled with it;
    `SamePlanForm` refuses a mismatch either way."""

    plan_scoped_fields: tuple[str, ...] = ()

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        for name in self.plan_scoped_fields:
            field = form.base_fields.get(name)
            if field is None:
                continue
            if obj is None:
                field.queryset = field.queryset.select_related("plan")
                field.label_from_instance = plan_and_name
            else:
                field.queryset = field.queryset.filter(plan=obj.plan_id)
        return form


# --- Plan -------------------------------------------------------------------------------------


class StageFormSet(BaseInlineFormSet):
    def clean(self) -> None:
        super().clean()
        seen: set[str] = set()
        for form in self.forms:
            if not hasattr(form, "cleaned_data") or form.cleaned_data.get("DELETE"):
                continue
            name = (form.cleaned_data.get("name") or "").strip().lower()
            if name and name in seen:
                raise forms.ValidationError(f"Two stages are called “{name}”; names must differ.")
            seen.add(name)


class StageInline(admin.TabularInline):
    model = Stage
    formset = StageFormSet
    fields = ["name", "position"]
    ordering = ["position", "id"]
    extra = 0
    show_change_link = True


class MembershipInline(admin.TabularInline):
    model = Membership
    fields = ["user", "role", "business_unit", "digest_opt_out", "all_quiet_digest"]
    autocomplete_fields = ["user"]
    extra = 0

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("user")


class EventMappingInline(admin.TabularInline):
    model = EventMapping
    form = EventTypeForm
    fields = ["event_type", "stage"]
    extra = 0
    verbose_name = "event map line"
    verbose_name_plural = "event map"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("stage")

    def get_formset(self, request, obj=None, **kwargs):
        formset = super().get_formset(request, obj, **kwargs)
        stage = formset.form.base_fields["stage"]
        stage.queryset = Stage.objects.filter(plan=obj) if obj else Stage.objects.none()
        # Read the stages once for the whole map, not once per line of it.
        stage.choices = list(stage.choices)
        return formset


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "member_count", "retest_cadence", "next_retest_at"]
    list_filter = ["retest_cadence"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    # Plan.save sets the next re-test from the schedule, so it is shown, not edited.
    readonly_fields = ["next_retest_at", "version", "created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["name", "slug", "description"]}),
        (
            "Re-test schedule",
            {
                "fields": [
                    "retest_cadence",
                    "retest_weekday",
                    "retest_time",
                    "retest_timezone",
                    "next_retest_at",
                ]
            },
        ),
        ("Record", {"fields": ["version", "created_at", "updated_at"]}),
    ]
    inlines = [StageInline, EventMappingInline, MembershipInline]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(member_count=Count("memberships"))

    @admin.display(description="members", ordering="member_count")
    def member_count(self, plan: Plan) -> int:
        return plan.member_count  # type: ignore[attr-defined]

    def get_inlines(self, request, obj):
        # The event map points at stages, which a plan being added does not have yet.
        if obj is None:
            return [StageInline, MembershipInline]
        return self.inlines

    def save_related(self, request, form, formsets, change) -> None:
        super().save_related(request, form, formsets, change)
        plan = form.instance
        if not change and not plan.stages.exists():
            add_stages(plan, DEFAULT_STAGES)

    def get_deleted_objects(self, objs, request):
        """Count what a plan takes with it instead of listing every row.

        A plan can hold millions of events, and the admin's default listing loads them all."""
        plans = list(objs)
        counts: dict[str, int] = {str(Plan._meta.verbose_name_plural): len(plans)}
        related = [
            (rel.related_model, {f"{rel.field.name}__in": plans})
            for rel in Plan._meta.related_objects
            if rel.one_to_many
        ]
        related.append((Assumption, {"choice__plan__in": plans}))
        perms_needed: set[str] = set()
        history = _history_names(self.admin_site)
        for model, lookup in related:
            count = model._base_manager.filter(**lookup).count()
            if not count:
                continue
            opts = model._meta
            counts[str(opts.verbose_name_plural)] = count
            codename = f"{opts.app_label}.delete_{opts.model_name}"
            if str(opts.verbose_name) not in history and not request.user.has_perm(codename):
                perms_needed.add(str(opts.verbose_name))
        deleted = [
            format_html(
                'Plan: <a href="{}">{}</a>',
                reverse("admin:planning_plan_change", args=[plan.pk]),
                plan,
            )
            for plan in plans
        ]
        return deleted, counts, perms_needed, []


# --- Members, choices, assumptions, initiatives, comments --------------------------------------


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "plan", "role", "business_unit", "digest_opt_out", "joined_at"]
    ordering = ["plan__name", "user__username"]
    list_filter = ["role", "digest_opt_out", "plan"]
    list_select_related = ["user", "plan"]
    search_fields = [
        "user__username",
        "user__email",
        "user__first_name",
        "user__last_name",
        "plan__name",
        "plan__slug",
        "business_unit",
    ]
    autocomplete_fields = ["plan", "user"]
    readonly_fields = ["joined_at"]


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    """Sent from the members page, answered from its link: here only read, or deleted. The
    token is never shown: with it anyone could accept."""

    list_display = ["email", "plan", "role", "business_unit", "invited_by", "sent_at", "status"]
    list_filter = ["role", "plan"]
    list_select_related = ["plan", "invited_by"]
    search_fields = ["email", "plan__name", "plan__slug"]
    ordering = ["-sent_at"]
    exclude = ["token"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="status")
    def status(self, invitation: Invitation) -> str:
        return invitation.state(timezone.now())


class ChoiceAdminForm(SamePlanForm):
    same_plan_fields = ("stages",)


class AssumptionInline(admin.TabularInline):
    model = Assumption
    fields = ["statement", "importance", "evidence", "position", "status"]
    readonly_fields = ["status"]
    ordering = ["position", "id"]
    extra = 0
    show_change_link = True


@admin.register(StrategicChoice)
class StrategicChoiceAdmin(HistoryGoesAlongMixin, PlanScopedAdmin):
    form = ChoiceAdminForm
    plan_scoped_fields = ("stages",)
    list_display = ["title", "plan", "status", "horizon", "owner", "business_unit", "updated_at"]
    ordering = ["plan__name", "position", "id"]
    list_filter = ["status", "horizon", "plan"]
    list_select_related = ["plan", "owner__user"]
    search_fields = ["title", "business_unit", "plan__name", "plan__slug"]
    autocomplete_fields = ["plan", "owner"]
    filter_horizontal = ["stages"]
    readonly_fields = ["version", "created_at", "updated_at"]
    inlines = [AssumptionInline]


_BADGE_ICONS = {
    AssumptionStatus.HOLDS: "icon-yes.svg",
    AssumptionStatus.BROKEN: "icon-no.svg",
    AssumptionStatus.AT_RISK: "icon-alert.svg",
    AssumptionStatus.ERROR: "icon-alert.svg",
}


def status_badge(status: str) -> str:
    icon = _BADGE_ICONS.get(status, "icon-unknown.svg")  # type: ignore[call-overload]
    label = AssumptionStatus(status).label if status in AssumptionStatus.values else status
    return format_html('<img src="{}" alt=""> {}', static(f"admin/img/{icon}"), label)


def observed_badge(
    assumption: Assumption, observed: float | None, low: float | None, high: float | None, n: Any
) -> str:
    """The observed value with its interval and sample, as the CMO reads them (41.0%, not 0.41)."""
    if observed is None:
        return "—"
    text = assumption.format_value(observed)
    if low is not None and high is not None:
        text += f" [{assumption.format_value(low)} – {assumption.format_value(high)}]"
    if n is not None:
        text += f", n = {n}"
    return text


@admin.register(Assumption)
class AssumptionAdmin(HistoryGoesAlongMixin, admin.ModelAdmin):
    list_display = [
        "statement",
        "choice",
        "plan",
        "metric",
        "status_badge",
        "observed_badge",
        "importance",
        "evidence",
        "last_run_at",
    ]
    list_filter = ["status", "metric", "choice__plan"]
    ordering = ["choice__plan__name", "choice__position", "position", "id"]
    list_select_related = ["choice__plan"]
    search_fields = ["statement", "choice__title", "choice__plan__name"]
    autocomplete_fields = ["choice", "owner"]
    readonly_fields = [
        "status",
        "observed",
        "sample_size",
        "ci_low",
        "ci_high",
        "last_run_at",
        "version",
        "created_at",
        "updated_at",
    ]
    fieldsets = [
        (None, {"fields": ["choice", "statement", "importance", "evidence", "owner", "position"]}),
        (
            "Test",
            {"fields": list(Assumption.TEST_FIELDS)},
        ),
        (
            "Latest verdict (written by re-tests)",
            {"fields": ["status", "observed", "sample_size", "ci_low", "ci_high", "last_run_at"]},
        ),
        ("Record", {"fields": ["version", "created_at", "updated_at"]}),
    ]

    @admin.display(description="plan", ordering="choice__plan__name")
    def plan(self, assumption: Assumption) -> Plan:
        return assumption.choice.plan

    @admin.display(description="status", ordering="status")
    def status_badge(self, assumption: Assumption) -> str:
        return status_badge(assumption.status)

    @admin.display(description="observed", ordering="observed")
    def observed_badge(self, assumption: Assumption) -> str:
        return observed_badge(
            assumption,
            assumption.observed,
            assumption.ci_low,
            assumption.ci_high,
            assumption.sample_size,
        )


class InitiativeAdminForm(SamePlanForm):
    same_plan_fields = ("stages", "choices")


@admin.register(BTInitiative)
class BTInitiativeAdmin(PlanScopedAdmin):
    form = InitiativeAdminForm
    plan_scoped_fields = ("stages", "choices")
    list_display = ["title", "plan", "status", "cost_estimate", "updated_at"]
    ordering = ["plan__name", "position", "id"]
    list_filter = ["status", "plan"]
    list_select_related = ["plan"]
    search_fields = ["title", "plan__name", "plan__slug"]
    autocomplete_fields = ["plan"]
    filter_horizontal = ["stages", "choices"]
    readonly_fields = ["version", "created_at", "updated_at"]


class CommentAdminForm(SamePlanForm):
    same_plan_fields = ("choice", "assumption")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if bool(cleaned.get("choice")) == bool(cleaned.get("assumption")):
            raise forms.ValidationError("A comment is on a choice or on an assumption: pick one.")
        return cleaned


@admin.register(Comment)
class CommentAdmin(admin.ModelAdmin):
    form = CommentAdminForm
    list_display = ["__str__", "plan", "on", "author", "created_at"]
    list_filter = ["plan"]
    list_select_related = ["plan", "choice", "assumption", "author"]
    search_fields = ["body", "author__username", "plan__name"]
    autocomplete_fields = ["plan", "choice", "assumption", "author"]
    readonly_fields = ["created_at"]
    date_hierarchy = "created_at"

    @admin.display(description="on")
    def on(self, comment: Comment) -> str:
        return str(comment.choice or comment.assumption)


# --- Activity: the audit trail ----------------------------------------------------------------


ACTIVITY_FIELDS = (
    "created_at",
    "plan",
    "actor",
    "action",
    "item_type",
    "item_id",
    "item_label",
    "before_json",
    "after_json",
    "reverts",
)


@admin.register(Activity)
class ActivityAdmin(HistoryAdmin):
    list_display = ["created_at", "plan", "actor", "action", "item_type", "item_label"]
    list_filter = ["action", "item_type", "plan"]
    list_select_related = ["plan", "actor"]
    search_fields = ["item_label", "actor__username"]
    date_hierarchy = "created_at"
    ordering = ["-created_at", "-id"]
    fields = ACTIVITY_FIELDS
    readonly_fields = ACTIVITY_FIELDS

    @admin.display(description="before")
    def before_json(self, activity: Activity) -> str:
        return pretty_json(activity.before)

    @admin.display(description="after")
    def after_json(self, activity: Activity) -> str:
        return pretty_json(activity.after)


@admin.register(Presence)
class PresenceAdmin(admin.ModelAdmin):
    """Who has a board open now. Written by the live board; support may only clear a stale one."""

    list_display = ["user", "plan", "editing", "last_seen"]
    list_filter = ["plan"]
    list_select_related = ["user", "plan"]
    search_fields = ["user__username", "plan__name", "plan__slug"]
    ordering = ["-last_seen"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(PendingJob)
class PendingJobAdmin(admin.ModelAdmin):
    """Background jobs the broker could not take (Redis down); the beat sends them when it can.
    Support can see what waits, and delete a job that should never run."""

    list_display = ["task", "args", "created_at", "attempts"]
    readonly_fields = ["task", "args", "kwargs", "created_at", "attempts"]
    ordering = ["id"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


# Workshop sessions register their own admins, in their own module: this one is long enough.
from .sessions import admin as sessions_admin  # noqa: E402, F401
