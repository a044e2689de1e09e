"""Back-office for life-cycle stages and event maps. Plans edit both inline (planning/admin.py)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import Model

from .models import EventMapping, Stage


def plan_and_name(obj: Model) -> str:
    """A stage or choice with its plan, for lists where several plans' "Discover" meet."""
    return f"{obj.plan} · {obj}"  # type: ignore[attr-defined]


@admin.register(Stage)
class StageAdmin(admin.ModelAdmin):
    list_display = ["name", "plan", "position"]
    # Grouped by plan: the model's own order (position) would interleave every plan's stages.
    ordering = ["plan__name", "position", "id"]
    list_filter = ["plan"]
    list_select_related = ["plan"]
    search_fields = ["name", "plan__name", "plan__slug"]
    autocomplete_fields = ["plan"]
    readonly_fields = ["version"]


class EventTypeForm(forms.ModelForm):
    def clean_event_type(self) -> str:
        # Stored and compared lower-case (DOMAIN §4): "Visit" must clash with "visit" here, not
        # as an IntegrityError on save.
        return self.cleaned_data["event_type"].strip().lower()


class EventMappingForm(EventTypeForm):
    class Meta:
        model = EventMapping
        fields = ["plan", "event_type", "stage"]

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        plan, stage = cleaned.get("plan"), cleaned.get("stage")
        if plan and stage and stage.plan_id != plan.pk:
            self.add_error("stage", f"“{stage}” is a stage of another plan, not of “{plan}”.")
        return cleaned


@admin.register(EventMapping)
class EventMappingAdmin(admin.ModelAdmin):
    form = EventMappingForm
    list_display = ["event_type", "stage", "plan"]
    ordering = ["plan__name", "event_type"]
    list_filter = ["plan"]
    list_select_related = ["plan", "stage"]
    search_fields = ["event_type", "stage__name", "plan__name", "plan__slug"]
    autocomplete_fields = ["plan"]

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        stage = form.base_fields["stage"]
        if obj is None:
            stage.queryset = stage.queryset.select_related("plan")
            stage.label_from_instance = plan_and_name
        else:
            stage.queryset = stage.queryset.filter(plan=obj.plan_id)
        return form
