"""One place for each kind of item (planning/kinds.py): URLs, forms, services and the live
board's data are derived from it, and the board's JavaScript knows no kind, URL or field."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.urls import reverse

from planning import live
from planning.kinds import KINDS
from planning.live import events as live_events
from planning.models import Activity, Assumption, StrategicChoice

LIVE_JS = Path(__file__).resolve().parents[2] / "static" / "js" / "live.js"


@pytest.mark.parametrize("kind", KINDS.values(), ids=lambda k: k.name)
def test_every_kind_has_its_urls_from_the_registry(kind):
    actions = ["view", "edit", "delete", "move"] + (["comments"] if kind.comments else [])
    for action in actions:
        url = kind.url(action, "fy2027", 7)
        assert url.startswith(f"/plans/fy2027/{kind.plural}/7/")
    new = (
        reverse(f"planning:{kind.name}_new", args=["fy2027", 3])
        if kind.parent
        else reverse(f"planning:{kind.name}_new", args=["fy2027"])
    )
    assert new.endswith(f"/{kind.plural}/new/")
    assert kind.form._meta.model is kind.model
    assert set(kind.form._meta.fields) == set(kind.editable)


def test_the_live_board_script_knows_no_kind_url_or_field():
    script = LIVE_JS.read_text()
    words = set(re.findall(r"[A-Za-z_]+", script))
    strings = set(re.findall(r"\"([^\"]*)\"", script))
    for kind in KINDS.values():
        assert kind.name not in words and kind.plural not in words, kind.name
        assert not {*kind.moves_card, *kind.editable} & strings  # no field name as data
    assert "123456789" not in script
    assert "HX-Request" not in script  # htmx asks, with its own headers


@pytest.mark.django_db
def test_a_changed_item_says_which_cards_to_refetch_and_from_where(plan, cmo):
    choice = StrategicChoice.objects.create(plan=plan, title="Launch a loyalty subscription")
    assumption = Assumption.objects.create(choice=choice, statement="Members buy again")

    def change(kind, pk, action, after):
        Activity.objects.create(
            plan=plan, action=action, item_type=kind, item_id=pk, item_label="x", after=after
        )

    since = Activity.objects.order_by("-id").values_list("id", flat=True).first() or 0
    change("assumption", assumption.pk, "updated", {"importance": 5})
    change("assumption", assumption.pk, "tested", {"status": "holds"})
    change("choice", choice.pk, "updated", {"rationale": "Why"})
    change("choice", choice.pk, "updated", {"title": "Renamed"})  # moves its card
    change("choice", choice.pk, "created", {"title": "New"})
    change("stage", 3, "updated", {"name": "Try"})
    until = Activity.objects.order_by("-id").values_list("id", flat=True).first()
    items = live.changes_between(plan.pk, plan.slug, since, until)
    assumption_url = reverse("planning:assumption", args=[plan.slug, assumption.pk])
    choice_url = reverse("planning:choice", args=[plan.slug, choice.pk])
    assert items == [
        {"key": f"assumption-{assumption.pk}", "url": assumption_url, "refresh": "item"},
        {"key": f"assumption-{assumption.pk}", "url": assumption_url, "refresh": "item"},
        {"key": f"choice-{choice.pk}", "url": choice_url, "refresh": "item"},
        {"key": f"choice-{choice.pk}", "url": "", "refresh": "board"},
        {"key": f"choice-{choice.pk}", "url": "", "refresh": "board"},
        {"key": "stage-3", "url": "", "refresh": "board"},
    ]
    live_events.check("changed", {"version": 9, "items": items})


@pytest.mark.parametrize(
    ("event", "data"),
    [
        ("changed", {"version": 3}),
        ("changed", {"version": "3", "items": None}),
        ("changed", {"version": 3, "items": [{"key": "a-1", "url": "/", "refresh": "soon"}]}),
        ("changed", {"version": 3, "items": [{"key": "a-1", "url": "/"}]}),
        ("hello", {"connection": 7}),
        ("presence", [{"id": 1, "name": "Ana"}]),
        ("surprise", {}),
    ],
)
def test_the_schema_refuses_what_the_board_could_not_read(event, data):
    with pytest.raises(live_events.EventError):
        live_events.check(event, data)
