"""The forms of a workshop session: a new session, a step of its agenda, a private item."""

from __future__ import annotations

from typing import Any

from django import forms

from lifecycle.models import Stage

from ..models import Plan, StrategicChoice
from ..models.sessions import SessionStep, WorkshopSession
from .agenda import TEMPLATES


class SessionForm(forms.ModelForm):
    template = forms.ChoiceField(
        label="Agenda",
        choices=[(key, label) for key, (label, _) in TEMPLATES.items()],
        initial="workshop",
        help_text="Steps can be added, changed and removed afterwards, during the session too.",
    )

    class Meta:
        model = WorkshopSession
        fields = ["title", "date", "votes_per_member", "votes_per_item"]
        labels = {
            "votes_per_member": "Votes per member",
            "votes_per_item": "Most votes on one item",
        }
        widgets = {"date": forms.DateInput(attrs={"type": "date"})}


class StepForm(forms.ModelForm):
    class Meta:
        model = SessionStep
        fields = ["kind", "title", "timebox_minutes", "stage", "item_kind", "view"]
        labels = {
            "timebox_minutes": "Minutes",
            "item_kind": "Items",
            "view": "Shows",
        }
        help_texts = {
            "stage": "Brainstorm steps: the stage the items are for.",
            "item_kind": "Brainstorm and vote steps: choices or assumptions.",
            "view": "Review steps: what the room looks at.",
        }

    def __init__(
        self, *args: Any, plan: Plan, stages: list[Stage] | None = None, **kwargs: Any
    ) -> None:
        """`stages`, the plan's, read once for an agenda's many forms."""
        super().__init__(*args, **kwargs)
        stage = self.fields["stage"]
        assert isinstance(stage, forms.ModelChoiceField)
        stage.queryset = Stage.objects.filter(plan=plan)  # what a posted stage may be
        if stages is not None:
            stage.choices = [("", "Any stage"), *((s.pk, s.name) for s in stages)]
        else:
            stage.empty_label = "Any stage"


class NoteForm(forms.Form):
    text = forms.CharField(label="Your idea", max_length=200)
    choice = forms.ModelChoiceField(
        label="Rests on the choice",
        queryset=StrategicChoice.objects.none(),
        required=False,
        empty_label="Pick a choice",
    )

    def __init__(self, *args: Any, step: SessionStep, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.step = step
        choices = StrategicChoice.objects.filter(plan_id=step.session.plan_id)
        if step.stage_id:
            choices = choices.filter(stages=step.stage_id)
        choice = self.fields["choice"]
        assert isinstance(choice, forms.ModelChoiceField)
        choice.queryset = choices.order_by("position", "id")
        if step.item_kind == "assumption":
            self.fields["text"].label = "An assumption"
            choice.required = True
        else:
            self.fields["text"].label = (
                f"A choice for {step.stage.name}" if step.stage else "A strategic choice"
            )
            del self.fields["choice"]
