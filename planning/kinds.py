"""The kinds of item a plan holds on its board: one entry each, and everything else derived.

A kind names its model, the fields a member edits (what snapshots, conflicts, activity and
reverts use), the name that is unique among its siblings, its form, who may change it, its
URLs (`planning:<name>`, `<name>_new`, `_edit`, `_delete`, `_move`, and `_comments` where it
has comments), the board's partial that draws it, and which edits move its card on the board
(those make open boards refresh whole; other edits refresh that one card). The URL patterns,
the item views, the editing services, the forms and the live events' data all read it here.

A new kind is one entry below, plus its model, form and partial.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from django.db import models
from django.db.models import Count, QuerySet
from django.urls import reverse
from django.utils.module_loading import import_string

from lifecycle.models import Stage

from .models import (
    DUPLICATE_CHOICE_TITLE,
    DUPLICATE_INITIATIVE_TITLE,
    DUPLICATE_STAGE_NAME,
    DUPLICATE_STATEMENT,
    Assumption,
    BTInitiative,
    StrategicChoice,
)

if TYPE_CHECKING:
    from .forms import ItemForm
    from .models import Plan


@dataclass(frozen=True)
class Kind:
    name: str  # in URLs' names, activity records, anchors and live events: "choice"
    plural: str  # in URL paths: /plans/<slug>/choices/…
    label: str  # in words: "strategic choice"
    model: type[models.Model]
    editable: tuple[str, ...]  # the fields a member edits, in form order
    unique: str  # the field unique among siblings
    duplicate: str  # what the form and the service say of a duplicate
    form_path: str
    # The kind of the item this one lives under ("choice" for an assumption), else the plan.
    parent: str | None = None
    unique_ignores_case: bool = False
    facilitators_only: bool = False
    comments: bool = False
    # Drawn once per stage column its choice targets: its anchor names the column.
    per_column: bool = False
    # Open boards re-fetch one card of it after an edit, unless the edit changed one of
    # `moves_card` (its place or what shows elsewhere on the board): then the whole board.
    refreshes_alone: bool = True
    moves_card: frozenset[str] = frozenset()
    select_related: tuple[str, ...] = field(default=())

    @cached_property
    def form(self) -> type[ItemForm]:
        return import_string(self.form_path)

    @property
    def plan_path(self) -> str:
        return f"{self.parent}__plan" if self.parent else "plan"

    @property
    def parent_field(self) -> str:
        """The foreign key to what the item lives under: `choice_id`, or `plan_id`."""
        return f"{self.parent}_id" if self.parent else "plan_id"

    @property
    def many(self) -> set[str]:
        return {
            name
            for name in self.editable
            if getattr(self.model._meta.get_field(name), "many_to_many", False)
        }

    def of_plan(self, plan: Plan) -> QuerySet:
        """The plan's items of this kind, as a card of the board shows them."""
        items = self.model._default_manager.filter(**{self.plan_path: plan})
        if self.select_related:
            items = items.select_related(*self.select_related)
        if self.comments:
            items = items.annotate(comment_count=Count("comments"))
        return items

    def siblings(self, item_or_parent: Any) -> QuerySet:
        """The items that share a position list (and a unique name) with this one."""
        column = self.parent_field
        value = getattr(item_or_parent, column, None)
        return self.model._default_manager.filter(**{column: value})

    def url(self, action: str, plan_slug: str, pk: int) -> str:
        name = f"planning:{self.name}" + (f"_{action}" if action != "view" else "")
        return reverse(name, args=[plan_slug, pk])


CARD_MOVES = frozenset({"stages", "title", "status", "horizon", "owner", "business_unit"})

KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in [
        Kind(
            name="choice",
            plural="choices",
            label="strategic choice",
            model=StrategicChoice,
            editable=(
                "title",
                "stages",
                "owner",
                "business_unit",
                "horizon",
                "status",
                "rationale",
            ),
            unique="title",
            duplicate=DUPLICATE_CHOICE_TITLE,
            form_path="planning.forms.ChoiceForm",
            comments=True,
            per_column=True,
            moves_card=CARD_MOVES,
            select_related=("owner__user",),
        ),
        Kind(
            name="assumption",
            plural="assumptions",
            label="assumption",
            model=Assumption,
            editable=("statement", "importance", "evidence", "owner", *Assumption.TEST_FIELDS),
            unique="statement",
            duplicate=DUPLICATE_STATEMENT,
            form_path="planning.forms.AssumptionForm",
            parent="choice",
            comments=True,
            per_column=True,
            select_related=("choice", "owner__user"),
        ),
        Kind(
            name="initiative",
            plural="initiatives",
            label="BT initiative",
            model=BTInitiative,
            editable=("title", "stages", "choices", "cost_estimate", "status"),
            unique="title",
            duplicate=DUPLICATE_INITIATIVE_TITLE,
            form_path="planning.forms.InitiativeForm",
            moves_card=CARD_MOVES,
        ),
        Kind(
            name="stage",
            plural="stages",
            label="stage",
            model=Stage,
            editable=("name",),
            unique="name",
            duplicate=DUPLICATE_STAGE_NAME,
            form_path="planning.forms.StageForm",
            unique_ignores_case=True,
            facilitators_only=True,
            refreshes_alone=False,  # a column: the board is laid out again
        ),
    ]
}


def kind_of(item: models.Model) -> Kind:
    return next(kind for kind in KINDS.values() if isinstance(item, kind.model))


def all_kinds() -> Iterator[Kind]:
    return iter(KINDS.values())
