"""Back-office for workshop sessions (DOMAIN §11): the sessions with their agendas, and what the
room wrote in them. Registered from planning/admin.py, which is long enough without them."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.utils import model_ngettext
from django.db.models import Case, Model, OuterRef, QuerySet, Subquery, When
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html_join

from ..models import Assumption, StrategicChoice
from ..models.sessions import (
    Decision,
    ItemKind,
    MapPlacement,
    SessionNote,
    SessionStep,
    SessionVote,
    WorkshopSession,
)

# The session's page links to the rows of each of its steps with this filter.
STEP_SESSION_LOOKUP = "step__session__id__exact"


class RoomRowAdmin(admin.ModelAdmin):
    """Rows the room writes: read here, or deleted, never added or changed by hand.

    The screens in the room follow the session's revision, which an edit here would not raise;
    and what a session changed in the plan is plan history (Activity), not these rows."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class StepRowAdmin(RoomRowAdmin):
    """Notes, votes and placements: rows of one step, listed with the step's session and plan."""

    list_select_related = ["step__session__plan"]
    search_fields = [
        "step__title",
        "step__session__title",
        "step__session__plan__name",
        "step__session__plan__slug",
    ]
    ordering = ["-step__session_id", "step__position", "id"]

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest) -> bool:
        return lookup == STEP_SESSION_LOOKUP or super().lookup_allowed(lookup, value, request)


STEP_FIELDS = (
    "position",
    "kind",
    "title",
    "timebox_minutes",
    "stage",
    "item_kind",
    "view",
    "revealed_at",
)


class StepInline(admin.TabularInline):
    model = SessionStep
    fields = STEP_FIELDS
    readonly_fields = STEP_FIELDS
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("stage")


@admin.register(WorkshopSession)
class WorkshopSessionAdmin(RoomRowAdmin):
    """Planned and run from the plan's sessions page; support reads them here, or deletes one
    with everything its room wrote."""

    list_display = [
        "title",
        "plan",
        "date",
        "status",
        "current_step",
        "started_at",
        "ended_at",
        "summary_sent_at",
    ]
    list_filter = ["status", "plan"]
    list_select_related = ["plan", "current_step"]
    search_fields = ["title", "plan__name", "plan__slug"]
    date_hierarchy = "date"
    fieldsets = [
        (None, {"fields": ["plan", "title", "date", "created_by", "created_at"]}),
        (
            "Room",
            {"fields": ["status", "current_step", "started_at", "ended_at", "summary_sent_at"]},
        ),
        ("Votes", {"fields": ["votes_per_member", "votes_per_item"]}),
        ("What the room wrote", {"fields": ["records"]}),
    ]
    readonly_fields = [
        "status",
        "current_step",
        "created_at",
        "started_at",
        "ended_at",
        "summary_sent_at",
        "records",
    ]
    inlines = [StepInline]

    @admin.display(description="rows")
    def records(self, session: WorkshopSession) -> str:
        """Each kind of row counted, linking to its list filtered to this session."""
        by_step = [SessionNote, SessionVote, MapPlacement]
        links: list[tuple[type[Model], str, QuerySet]] = [
            (model, STEP_SESSION_LOOKUP, model._default_manager.filter(step__session=session))
            for model in by_step
        ]
        links.append((Decision, "session__id__exact", session.decisions.all()))
        return format_html_join(
            ", ",
            '<a href="{}?{}={}">{} {}</a>',
            (
                (
                    reverse(f"admin:planning_{model._meta.model_name}_changelist"),
                    lookup,
                    session.pk,
                    count,
                    model_ngettext(model._meta, count),
                )
                for model, lookup, rows in links
                for count in [rows.count()]
            ),
        )


@admin.register(SessionStep)
class SessionStepAdmin(RoomRowAdmin):
    list_display = ["title", "session", "session__plan", "position", "kind", "revealed_at"]
    list_filter = ["kind", "session__plan"]
    list_select_related = ["session__plan"]
    search_fields = ["title", "session__title", "session__plan__name", "session__plan__slug"]
    ordering = ["-session_id", "position", "id"]
    readonly_fields = ["revealed_at"]


@admin.register(SessionNote)
class SessionNoteAdmin(StepRowAdmin):
    list_display = [
        "text",
        "author",
        "step",
        "step__session",
        "step__session__plan",
        "created_at",
        "merged",
    ]
    list_filter = ["merged", "step__session__plan"]
    list_select_related = [*StepRowAdmin.list_select_related, "author"]
    search_fields = [*StepRowAdmin.search_fields, "text", "author__username"]
    readonly_fields = ["created_at", "item_id", "merged"]


@admin.register(SessionVote)
class SessionVoteAdmin(StepRowAdmin):
    list_display = [
        "item",
        "item_type",
        "count",
        "voter",
        "step",
        "step__session",
        "step__session__plan",
    ]
    list_filter = ["item_type", "step__session__plan"]
    list_select_related = [*StepRowAdmin.list_select_related, "voter"]
    search_fields = [*StepRowAdmin.search_fields, "voter__username"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # A vote names its item by id; its title comes in the same query, not one per row.
        item = OuterRef("item_id")
        choice = StrategicChoice.objects.filter(pk=item).values("title")
        assumption = Assumption.objects.filter(pk=item).values("statement")
        return (
            super()
            .get_queryset(request)
            .annotate(
                item_title=Case(
                    When(item_type=ItemKind.CHOICE, then=Subquery(choice)),
                    default=Subquery(assumption),
                )
            )
        )

    @admin.display(description="item", ordering="item_title")
    def item(self, vote: SessionVote) -> str:
        return vote.item_title or f"#{vote.item_id}, since deleted"  # type: ignore[attr-defined]


@admin.register(MapPlacement)
class MapPlacementAdmin(StepRowAdmin):
    list_display = [
        "assumption",
        "importance",
        "evidence",
        "settled_at",
        "moved_by",
        "step__session",
        "step__session__plan",
    ]
    list_filter = ["step__session__plan"]
    list_select_related = [*StepRowAdmin.list_select_related, "assumption", "moved_by"]
    search_fields = [*StepRowAdmin.search_fields, "assumption__statement"]


@admin.register(Decision)
class DecisionAdmin(RoomRowAdmin):
    list_display = [
        "item_label",
        "outcome",
        "item_type",
        "detail",
        "session",
        "session__plan",
        "decided_by",
        "decided_at",
    ]
    list_filter = ["outcome", "item_type", "session__plan"]
    list_select_related = ["session__plan", "decided_by"]
    search_fields = ["item_label", "session__title", "session__plan__name", "session__plan__slug"]
    ordering = ["-session_id", "decided_at", "id"]
    readonly_fields = ["decided_at"]
