"""Editing the board in place (DOMAIN §3): choices, assumptions, BT initiatives and stages.

Every write is tried the way a browser sends it with HTMX (a fragment comes back) and without
JavaScript (a redirect to the item on the board), by the people who may and may not make it.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from decimal import Decimal
from html import unescape

import pytest
from django.urls import reverse

from insights.models import Event
from lifecycle.models import Stage
from planning.forms import OBSERVERS_OWN_NOTHING, percent_of
from planning.models import (
    PROPORTION_METRICS,
    Activity,
    Assumption,
    BTInitiative,
    Membership,
    Plan,
    StrategicChoice,
)
from planning.services import create_plan, kind_of, snapshot

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}
KINDS = ["choice", "assumption", "initiative", "stage"]
# Who edits each kind in these tests: stages are the facilitator's.
EDITOR = {"choice": "cmo", "assumption": "bu_leader", "initiative": "cio", "stage": "facilitator"}


@pytest.fixture
def items(plan, cmo) -> dict[str, list]:
    """Two of each kind of item, so that each can move up and down."""
    buy, engage = plan.stages.get(name="Buy"), plan.stages.get(name="Engage")
    loyalty = StrategicChoice.objects.create(
        plan=plan,
        title="Launch a loyalty subscription",
        owner=cmo.membership,
        business_unit="Retail",
        position=0,
    )
    loyalty.stages.set([buy, engage])
    delivery = StrategicChoice.objects.create(
        plan=plan,
        title="Offer next-day delivery",
        business_unit="Logistics",
        horizon="next",
        status="adopted",
        position=1,
    )
    delivery.stages.set([buy])
    repeat = Assumption.objects.create(
        choice=loyalty,
        statement="At least 30% of first-time buyers buy again within 90 days",
        importance=4,
        evidence=2,
        owner=cmo.membership,
        metric="repeat_rate",
        params={"event_type": "purchase", "within_days": 90},
        comparator=">=",
        threshold=0.3,
        position=0,
    )
    perks = Assumption.objects.create(
        choice=loyalty, statement="Members like the perks", position=1
    )
    billing = BTInitiative.objects.create(
        plan=plan,
        title="Subscription billing platform",
        cost_estimate=Decimal("250000"),
        status="planned",
        position=0,
    )
    billing.stages.set([buy])
    billing.choices.set([loyalty])
    cdp = BTInitiative.objects.create(plan=plan, title="Customer data platform", position=1)
    for item in (loyalty, delivery, repeat, perks, billing, cdp):
        item.refresh_from_db()  # values as the database gives them back (250000.00)
    return {
        "choice": [loyalty, delivery],
        "assumption": [repeat, perks],
        "initiative": [billing, cdp],
        "stage": list(plan.stages.order_by("position")),
    }


def persona(request, kind: str):
    return request.getfixturevalue(EDITOR[kind])


# --- what the forms post ----------------------------------------------------------------------


def post_data(values: dict) -> dict:
    """Item values (as `snapshot` gives them) as the form posts them: a share's thresholds are
    typed in percent (0.3 is 30)."""
    data: dict = {}
    share = values.get("metric") in PROPORTION_METRICS
    for name, value in values.items():
        if name == "params":
            data.update({f"param_{k}": str(v) for k, v in value.items()})
        elif value is None:
            data[name] = ""
        elif share and name in {"threshold", "threshold_high"}:
            data[name] = percent_of(value)
        elif isinstance(value, list):
            data[name] = [str(v) for v in value]
        else:
            data[name] = str(value)
    return data


def edit_data(item, **changes) -> dict:
    """What the edit form posts: every field as it showed it, with my changes, and the base and
    version it was opened with."""
    item.refresh_from_db()
    base = snapshot(item)
    return {**post_data({**base, **changes}), "base": json.dumps(base), "version": item.version}


def new_values(kind: str, plan: Plan, items: dict, who) -> dict:
    """A complete new item of each kind, as `snapshot` will give it back."""
    stage = {s.name: s.pk for s in items["stage"]}
    if kind == "choice":
        return {
            "title": "Open a repair service",
            "stages": sorted([stage["Use"], stage["Ask"]]),
            "owner": who.membership.pk,
            "business_unit": "Services",
            "horizon": "later",
            "status": "proposed",
            "rationale": "Customers who repair stay longer.",
        }
    if kind == "assumption":
        return {
            "statement": "Members buy more often than others",
            "importance": 5,
            "evidence": 1,
            "owner": who.membership.pk,
            "metric": "",
            "params": {},
            "comparator": "",
            "threshold": None,
            "threshold_high": None,
            "min_sample": 30,
            "segment": "",
            "channel": "",
            "window_days": None,
        }
    if kind == "initiative":
        return {
            "title": "Repair booking app",
            "stages": [stage["Use"]],
            "choices": [items["choice"][1].pk],
            "cost_estimate": "120000.00",
            "status": "proposed",
        }
    return {"name": "Advocate"}


CHANGES = {
    "choice": {"status": "adopted", "horizon": "later", "rationale": "Members spend 3x more."},
    "assumption": {"statement": "At least 35% of first-time buyers come back", "importance": 5},
    "initiative": {"cost_estimate": "300000.00", "status": "in_progress"},
    "stage": {"name": "Purchase"},
}


def new_url(plan: Plan, kind: str, items: dict) -> str:
    if kind == "assumption":
        return reverse("planning:assumption_new", args=[plan.slug, items["choice"][0].pk])
    return reverse(f"planning:{kind}_new", args=[plan.slug])


def url(plan: Plan, action: str, item) -> str:
    name = f"planning:{kind_of(item)}" + (f"_{action}" if action else "")
    return reverse(name, args=[plan.slug, item.pk])


def board_url(plan: Plan) -> str:
    return reverse("planning:board", args=[plan.slug])


def anchor_of(item) -> str:
    """Where a redirect lands on the board: an id the board page really has."""
    kind = kind_of(item)
    if kind == "choice":
        first = item.stages.order_by("position").first()
        return f"choice-{item.pk}-in-{first.pk if first else 'none'}"
    if kind == "assumption":
        first = item.choice.stages.order_by("position").first()
        return f"assumption-{item.pk}-in-{first.pk if first else 'none'}"
    return f"{kind}-{item.pk}"


def state(plan: Plan) -> tuple:
    """Everything a write could change, to show that a refused one changed nothing."""
    rows = []
    for model in (StrategicChoice, BTInitiative, Stage):
        rows += [
            (i.pk, i.position, i.version, snapshot(i)) for i in model.objects.filter(plan=plan)
        ]
    rows += [
        (a.pk, a.position, a.version, snapshot(a))
        for a in Assumption.objects.filter(choice__plan=plan)
    ]
    plan_version = Plan.objects.get(pk=plan.pk).version
    return plan_version, Activity.objects.filter(plan=plan).count(), sorted(rows, key=repr)


def item_article(kind: str, pk: int) -> str:
    return {
        "choice": f'<article class="card choice" id="choice-{pk}-in-',
        "assumption": f'<article class="assumption" id="assumption-{pk}-in-',
        "initiative": f'<article class="card initiative" id="initiative-{pk}"',
        "stage": f'<header class="stage-head" data-key="stagehead-{pk}"',
    }[kind]


# --- add --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_add_saves_the_item_records_it_and_redirects_to_it(request, plan, items, kind):
    who = persona(request, kind)
    values = new_values(kind, plan, items, who)
    version = Plan.objects.get(pk=plan.pk).version

    response = who.client.post(new_url(plan, kind, items), post_data(values))

    created = type(items[kind][0]).objects.order_by("-pk").first()
    assert snapshot(created) == values
    assert created.version == 1
    assert created.position == len(items[kind])  # added last
    if kind == "assumption":
        assert created.choice == items["choice"][0]
    entry = Activity.objects.filter(plan=plan).first()
    assert (entry.action, entry.item_type, entry.item_id) == ("created", kind, created.pk)
    assert (entry.actor, entry.before, entry.after) == (who.user, None, values)
    assert Plan.objects.get(pk=plan.pk).version == version + 1
    assert response.status_code == 302
    assert response.headers["Location"] == f"{board_url(plan)}#{anchor_of(created)}"
    assert f'id="{anchor_of(created)}"' in who.client.get(board_url(plan)).content.decode()


@pytest.mark.parametrize("kind", ["choice", "assumption", "initiative"])
def test_add_with_htmx_answers_with_the_new_card(request, plan, items, kind):
    who = persona(request, kind)
    values = new_values(kind, plan, items, who)

    response = who.client.post(new_url(plan, kind, items), post_data(values), headers=HTMX)

    created = type(items[kind][0]).objects.order_by("-pk").first()
    html = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in html
    assert html.lstrip().startswith(item_article(kind, created.pk))
    assert (values.get("title") or values.get("statement")) in html


def test_a_new_stage_with_htmx_lays_the_board_out_again(plan, items, facilitator):
    response = facilitator.client.post(
        new_url(plan, "stage", items), {"name": "Advocate"}, headers=HTMX
    )
    assert response.status_code == 200
    assert response.headers["HX-Refresh"] == "true"
    assert plan.stages.order_by("position").last().name == "Advocate"


@pytest.mark.parametrize("kind", KINDS)
def test_the_new_form_is_a_page_or_a_fragment(request, plan, items, kind):
    who = persona(request, kind)
    page = who.client.get(new_url(plan, kind, items))
    fragment = who.client.get(new_url(plan, kind, items), headers=HTMX)
    assert page.status_code == fragment.status_code == 200
    assert "<html" in page.content.decode()
    html = fragment.content.decode()
    assert "<html" not in html
    assert html.lstrip().startswith('<article class="card editing"')
    assert f'data-new="{kind}"' in html
    assert ">Save</button>" in html and ">Cancel</a>" in html


def test_the_new_choice_form_ticks_the_stage_it_was_opened_from(plan, items, cmo):
    buy, use = plan.stages.get(name="Buy"), plan.stages.get(name="Use")
    html = cmo.client.get(
        reverse("planning:choice_new", args=[plan.slug]), {"stage": use.pk}, headers=HTMX
    ).content.decode()
    boxes = dict(re.findall(r'<input type="checkbox" name="stages" value="(\d+)"([^>]*)>', html))
    assert "checked" in boxes[str(use.pk)]
    assert "checked" not in boxes[str(buy.pk)]
    assert not any("checked" in attrs for pk, attrs in boxes.items() if pk != str(use.pk))


# --- edit -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_edit_saves_the_changes_bumps_the_version_and_records_before_and_after(
    request, plan, items, kind
):
    who = persona(request, kind)
    item = items[kind][0]
    before = snapshot(item)
    changes = CHANGES[kind]
    plan_version = Plan.objects.get(pk=plan.pk).version

    response = who.client.post(url(plan, "edit", item), edit_data(item, **changes))

    item.refresh_from_db()
    assert snapshot(item) == {**before, **changes}
    assert item.version == 2
    entry = Activity.objects.filter(plan=plan).first()
    assert (entry.action, entry.item_type, entry.item_id, entry.actor) == (
        "updated",
        kind,
        item.pk,
        who.user,
    )
    assert entry.before == {name: before[name] for name in changes}
    assert entry.after == changes
    assert Plan.objects.get(pk=plan.pk).version == plan_version + 1
    assert response.status_code == 302
    assert response.headers["Location"] == f"{board_url(plan)}#{anchor_of(item)}"
    assert f'id="{anchor_of(item)}"' in who.client.get(board_url(plan)).content.decode()


@pytest.mark.parametrize("kind", KINDS)
def test_edit_with_htmx_answers_with_the_saved_card(request, plan, items, kind):
    who = persona(request, kind)
    item = items[kind][0]
    response = who.client.post(
        url(plan, "edit", item), edit_data(item, **CHANGES[kind]), headers=HTMX
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in html
    assert html.lstrip().startswith(item_article(kind, item.pk))
    shown = {
        "choice": "Members spend 3x more.",
        "assumption": "At least 35% of first-time buyers come back",
        "initiative": "300,000",
        "stage": "Purchase",
    }
    assert shown[kind] in html


@pytest.mark.parametrize("kind", KINDS)
def test_the_edit_form_shows_the_item_its_base_and_version(request, plan, items, kind):
    who = persona(request, kind)
    item = items[kind][0]
    page = who.client.get(url(plan, "edit", item))
    fragment = who.client.get(url(plan, "edit", item), headers=HTMX)
    assert page.status_code == fragment.status_code == 200
    assert "<html" in page.content.decode()
    html = fragment.content.decode()
    assert "<html" not in html
    assert f'data-item="{kind}-{item.pk}"' in html
    assert f'name="version" value="{item.version}"' in html
    base = re.search(r'name="base" value="([^"]*)"', html).group(1)
    assert json.loads(unescape(base)) == snapshot(item)
    assert ">Save</button>" in html and ">Cancel</a>" in html


def test_saving_nothing_new_changes_nothing(plan, items, cmo):
    item = items["choice"][0]
    before = state(plan)
    response = cmo.client.post(url(plan, "edit", item), edit_data(item))
    assert response.status_code == 302
    assert state(plan) == before


def test_text_that_looks_like_a_number_is_still_text(plan, items, cmo):
    item = items["choice"][0]
    cmo.client.post(url(plan, "edit", item), edit_data(item, business_unit="2027"))
    cmo.client.post(url(plan, "edit", item), edit_data(item, business_unit="2027.0"))
    item.refresh_from_db()
    assert item.business_unit == "2027.0"


def test_a_cost_typed_without_cents_is_the_same_cost(plan, items, cio):
    billing = items["initiative"][0]
    before = state(plan)
    response = cio.client.post(
        url(plan, "edit", billing), edit_data(billing, cost_estimate="250000")
    )
    assert response.status_code == 302
    assert state(plan) == before  # 250000 is what it was (250000.00): nothing to save


@pytest.mark.parametrize("kind", KINDS)
def test_cancel_fetches_the_card_as_it_is(request, plan, items, kind):
    who = persona(request, kind)
    item = items[kind][0]
    fragment = who.client.get(url(plan, "", item), headers=HTMX)
    assert fragment.status_code == 200
    assert "<html" not in fragment.content.decode()
    assert fragment.content.decode().lstrip().startswith(item_article(kind, item.pk))
    page = who.client.get(url(plan, "", item))
    assert page.status_code == 302
    assert page.headers["Location"] == f"{board_url(plan)}#{anchor_of(item)}"


# --- assumptions with a test ------------------------------------------------------------------


def test_an_assumption_with_a_test_is_saved_whole(plan, items, bu_leader):
    values = {
        **new_values("assumption", plan, items, bu_leader),
        "metric": "conversion_rate",
        "params": {"from_event": "trial_start", "to_event": "purchase", "within_days": 14},
        "comparator": ">=",
        "threshold": 0.25,
        "min_sample": 50,
        "segment": "Students",
        "channel": "web",
        "window_days": 180,
    }
    response = bu_leader.client.post(new_url(plan, "assumption", items), post_data(values))
    assert response.status_code == 302
    created = Assumption.objects.get(statement=values["statement"])
    assert snapshot(created) == values
    assert created.target_display == "≥ 25.0%"


def test_between_takes_two_thresholds(plan, items, bu_leader):
    item = items["assumption"][0]
    changes = {"comparator": "between", "threshold": 0.25, "threshold_high": 0.4}
    response = bu_leader.client.post(url(plan, "edit", item), edit_data(item, **changes))
    assert response.status_code == 302
    item.refresh_from_db()
    assert (item.comparator, item.threshold, item.threshold_high) == ("between", 0.25, 0.4)
    assert item.thresholds == [0.25, 0.4]
    assert Activity.objects.filter(plan=plan).first().after == changes


def test_an_upper_threshold_is_dropped_unless_between(plan, items, bu_leader):
    item = items["assumption"][0]
    data = edit_data(item, threshold=0.35)
    data["threshold_high"] = "0.9"  # left in a hidden input after switching back to "at least"
    assert bu_leader.client.post(url(plan, "edit", item), data).status_code == 302
    item.refresh_from_db()
    assert (item.comparator, item.threshold, item.threshold_high) == (">=", 0.35, None)


def test_a_test_can_be_removed_and_its_params_go_with_it(plan, items, bu_leader):
    item = items["assumption"][0]
    data = edit_data(item, metric="")
    assert bu_leader.client.post(url(plan, "edit", item), data).status_code == 302
    item.refresh_from_db()
    assert (item.metric, item.params, item.comparator, item.threshold) == ("", {}, "", None)
    assert not item.has_test


def test_the_params_of_another_metric_are_not_kept(plan, items, bu_leader):
    item = items["assumption"][0]
    data = edit_data(item, metric="churn_rate", params={"inactive_days": 60}, comparator="<=")
    data["param_event_type"] = "purchase"  # the previous metric's input, still filled in
    assert bu_leader.client.post(url(plan, "edit", item), data).status_code == 302
    item.refresh_from_db()
    assert (item.metric, item.params) == ("churn_rate", {"inactive_days": 60})


# --- invalid input: 422, the error in words, nothing saved ------------------------------------


def _assert_refused(response, message: str, plan: Plan, before: tuple) -> None:
    assert response.status_code == 422
    assert message in response.content.decode()
    assert state(plan) == before


@pytest.mark.parametrize("htmx", [False, True])
def test_a_choice_title_is_unique_in_the_plan(plan, items, cmo, htmx):
    before = state(plan)
    values = {**new_values("choice", plan, items, cmo), "title": "Offer next-day delivery"}
    headers = HTMX if htmx else {}
    response = cmo.client.post(new_url(plan, "choice", items), post_data(values), headers=headers)
    _assert_refused(response, "Another strategic choice of this plan has this title.", plan, before)
    assert ("<html" in response.content.decode()) is not htmx
    loyalty = items["choice"][0]
    response = cmo.client.post(
        url(plan, "edit", loyalty), edit_data(loyalty, title=" Offer next-day delivery ")
    )
    _assert_refused(response, "Another strategic choice of this plan has this title.", plan, before)


@pytest.mark.parametrize("score", ["importance", "evidence"])
@pytest.mark.parametrize("value", [0, 7, -1, 2.5])
def test_importance_and_evidence_are_1_to_5_in_the_form(plan, items, bu_leader, score, value):
    before = state(plan)
    refused = f"{score.capitalize()} is a whole number from 1 to 5."
    values = {**new_values("assumption", plan, items, bu_leader), score: value}
    response = bu_leader.client.post(new_url(plan, "assumption", items), post_data(values))
    _assert_refused(response, refused, plan, before)
    item = items["assumption"][0]
    response = bu_leader.client.post(url(plan, "edit", item), edit_data(item, **{score: value}))
    _assert_refused(response, refused, plan, before)


def test_the_score_inputs_offer_1_to_5_only(plan, items, bu_leader):
    page = bu_leader.client.get(new_url(plan, "assumption", items)).content.decode()
    for score in ("importance", "evidence"):
        tag = re.search(rf'<input type="number" name="{score}"[^>]*>', page).group(0)
        assert 'min="1"' in tag and 'max="5"' in tag and 'step="1"' in tag


def owner_options(page: str) -> dict[str, bool]:
    """The owner select's options: value → selected."""
    select = re.search(r'<select name="owner"[^>]*>(.*?)</select>', page, re.S).group(1)
    return {
        value: bool(selected)
        for value, selected in re.findall(r'<option value="(\d*)"( selected)?>', select)
    }


@pytest.mark.parametrize("kind", ["choice", "assumption"])
def test_the_owner_is_who_adds_it_and_never_an_observer(
    plan, items, cmo, bu_leader, observer, kind
):
    page = bu_leader.client.get(new_url(plan, kind, items)).content.decode()
    options = owner_options(page)
    assert [value for value, selected in options.items() if selected] == [
        str(bu_leader.membership.pk)
    ]
    assert str(observer.membership.pk) not in options
    assert str(cmo.membership.pk) in options and "" in options  # others, or no owner yet

    before = state(plan)
    values = {**new_values(kind, plan, items, bu_leader), "owner": observer.membership.pk}
    response = bu_leader.client.post(new_url(plan, kind, items), post_data(values))
    assert response.status_code == 422
    assert state(plan) == before
    assert "Select a valid choice" in response.content.decode()  # not one of the options


def test_an_owner_who_became_an_observer_is_shown_and_must_be_replaced(plan, items, cmo, bu_leader):
    item = items["assumption"][0]
    Assumption.objects.filter(pk=item.pk).update(owner=cmo.membership)
    Membership.objects.filter(pk=cmo.membership.pk).update(role="observer")
    page = bu_leader.client.get(url(plan, "edit", item)).content.decode()
    assert owner_options(page)[str(cmo.membership.pk)] is True  # shown as it is
    before = state(plan)
    response = bu_leader.client.post(url(plan, "edit", item), edit_data(item, importance=5))
    _assert_refused(response, OBSERVERS_OWN_NOTHING, plan, before)
    response = bu_leader.client.post(
        url(plan, "edit", item), edit_data(item, importance=5, owner=bu_leader.membership.pk)
    )
    assert response.status_code == 302
    item.refresh_from_db()
    assert (item.importance, item.owner_id) == (5, bu_leader.membership.pk)


def test_between_without_an_upper_threshold_is_refused(plan, items, bu_leader):
    before = state(plan)
    item = items["assumption"][0]
    data = edit_data(item, comparator="between", threshold=0.2, threshold_high=None)
    response = bu_leader.client.post(url(plan, "edit", item), data, headers=HTMX)
    _assert_refused(response, "“Between” needs a low and a high threshold.", plan, before)
    assert "<html" not in response.content.decode()


def test_a_metric_without_its_params_is_refused(plan, items, bu_leader):
    before = state(plan)
    values = {
        **new_values("assumption", plan, items, bu_leader),
        "metric": "repeat_rate",
        "params": {"event_type": "purchase"},
        "comparator": ">=",
        "threshold": 0.3,
    }
    response = bu_leader.client.post(new_url(plan, "assumption", items), post_data(values))
    _assert_refused(response, "repeat_rate needs “within_days”.", plan, before)


def test_an_empty_post_is_told_what_is_missing(plan, items, cmo):
    before = state(plan)
    response = cmo.client.post(new_url(plan, "choice", items), {})
    _assert_refused(response, "This field is required.", plan, before)


def test_a_damaged_form_is_a_bad_request(plan, items, cmo):
    item = items["choice"][0]
    data = {**edit_data(item, status="adopted"), "base": "not json"}
    before = state(plan)
    assert cmo.client.post(url(plan, "edit", item), data).status_code == 400
    assert state(plan) == before


# --- delete -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_delete_removes_the_item_and_keeps_it_in_the_activity(request, plan, items, kind):
    who = persona(request, kind)
    item = items[kind][0]
    before = snapshot(item)
    response = who.client.post(url(plan, "delete", item))
    assert response.status_code == 302
    assert response.headers["Location"] == board_url(plan)
    assert not type(item).objects.filter(pk=item.pk).exists()
    entry = Activity.objects.filter(plan=plan).first()
    assert (entry.action, entry.item_type, entry.item_id, entry.actor) == (
        "deleted",
        kind,
        item.pk,
        who.user,
    )
    assert {k: v for k, v in entry.before.items() if not k.startswith("_")} == before


def test_deleting_a_choice_keeps_its_assumptions_in_the_activity(plan, items, cmo):
    loyalty = items["choice"][0]
    kept = [snapshot(a) for a in loyalty.assumptions.order_by("position")]
    cmo.client.post(url(plan, "delete", loyalty))
    assert not Assumption.objects.filter(choice_id=loyalty.pk).exists()
    entry = Activity.objects.filter(plan=plan).first()
    assert [
        {k: v for k, v in a.items() if not k.startswith("_")} for a in entry.before["_assumptions"]
    ] == kept


@pytest.mark.parametrize("kind", KINDS)
def test_delete_with_htmx_answers_with_nothing_to_put_in_its_place(request, plan, items, kind):
    who = persona(request, kind)
    item = items[kind][1]
    response = who.client.post(url(plan, "delete", item), headers=HTMX)
    assert response.status_code == 200
    assert response.content == b""
    assert not type(item).objects.filter(pk=item.pk).exists()


# --- move -------------------------------------------------------------------------------------


def positions(kind: str, items: dict) -> list[int]:
    first = items[kind][0]
    siblings = (
        Assumption.objects.filter(choice_id=first.choice_id)
        if kind == "assumption"
        else type(first).objects.filter(plan_id=first.plan_id)
    )
    return list(siblings.order_by("position", "id").values_list("pk", flat=True))


@pytest.mark.parametrize("kind", KINDS)
def test_move_down_and_up(request, plan, items, kind):
    who = persona(request, kind)
    first, second = items[kind][0], items[kind][1]
    order = positions(kind, items)
    assert order[:2] == [first.pk, second.pk]

    response = who.client.post(url(plan, "move", first), {"direction": "down"})
    assert response.status_code == 302
    first.refresh_from_db()
    assert response.headers["Location"] == f"{board_url(plan)}#{anchor_of(first)}"
    assert positions(kind, items)[:2] == [second.pk, first.pk]
    entry = Activity.objects.filter(plan=plan).first()
    assert (entry.action, entry.item_type, entry.item_id) == ("moved", kind, first.pk)
    assert (entry.before, entry.after) == ({"position": 0}, {"position": 1})

    response = who.client.post(url(plan, "move", first), {"direction": "up"}, headers=HTMX)
    assert response.status_code == 200
    assert response.headers["HX-Refresh"] == "true"
    assert positions(kind, items) == order


@pytest.mark.parametrize("kind", KINDS)
def test_moving_past_either_end_changes_nothing(request, plan, items, kind):
    who = persona(request, kind)
    before = state(plan)
    assert (
        who.client.post(url(plan, "move", items[kind][0]), {"direction": "up"}).status_code == 302
    )
    last = items[kind][-1] if kind != "assumption" else items["assumption"][1]
    assert who.client.post(url(plan, "move", last), {"direction": "down"}).status_code == 302
    assert state(plan) == before


def test_a_move_without_javascript_lands_where_the_card_is(plan, items, cmo):
    loyalty = items["choice"][0]  # on Buy and Engage: its card is in Buy, the first
    buy = plan.stages.get(name="Buy")
    response = cmo.client.post(url(plan, "move", loyalty), {"direction": "down", "in": buy.pk})
    assert response.headers["Location"] == f"{board_url(plan)}#choice-{loyalty.pk}-in-{buy.pk}"
    html = cmo.client.get(board_url(plan)).content.decode()
    assert f'id="choice-{loyalty.pk}-in-{buy.pk}"' in html
    assert f'<input type="hidden" name="in" value="{buy.pk}">' in html
    # Drawn once: Engage links to it instead.
    engage = plan.stages.get(name="Engage")
    assert f'id="choice-{loyalty.pk}-in-{engage.pk}"' not in html
    assert f'href="#choice-{loyalty.pk}-in-{buy.pk}"' in html


def test_a_move_needs_a_direction(plan, items, cmo):
    before = state(plan)
    response = cmo.client.post(url(plan, "move", items["choice"][0]), {"direction": "sideways"})
    assert response.status_code == 400
    assert state(plan) == before


# --- who may do what --------------------------------------------------------------------------


def write_requests(plan: Plan, items: dict, kind: str) -> list[tuple[str, str, dict]]:
    item = items[kind][0]
    values = post_data(CHANGES[kind])
    return [
        ("get", new_url(plan, kind, items), {}),
        ("post", new_url(plan, kind, items), values),
        ("get", url(plan, "edit", item), {}),
        ("post", url(plan, "edit", item), edit_data(item, **CHANGES[kind])),
        ("post", url(plan, "delete", item), {}),
        ("post", url(plan, "move", item), {"direction": "down"}),
    ]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("htmx", [False, True])
def test_observers_may_change_nothing(plan, items, observer, kind, htmx):
    before = state(plan)
    for method, address, data in write_requests(plan, items, kind):
        response = getattr(observer.client, method)(address, data, headers=HTMX if htmx else {})
        assert response.status_code == 403, (method, address)
    assert state(plan) == before
    # Reading is fine.
    assert observer.client.get(url(plan, "", items[kind][0]), headers=HTMX).status_code == 200


@pytest.mark.parametrize("persona_name", ["cmo", "cio", "bu_leader"])
def test_only_a_facilitator_changes_stages(request, plan, items, persona_name):
    who = request.getfixturevalue(persona_name)
    before = state(plan)
    for method, address, data in write_requests(plan, items, "stage"):
        response = getattr(who.client, method)(address, data)
        assert response.status_code == 403, (method, address)
    assert state(plan) == before


@pytest.mark.parametrize("kind", KINDS)
def test_outsiders_get_404_on_every_item_url(plan, items, outsider, kind):
    before = state(plan)
    item = items[kind][0]
    for method, address, data in [
        *write_requests(plan, items, kind),
        ("get", url(plan, "", item), {}),
    ]:
        response = getattr(outsider.client, method)(address, data)
        assert response.status_code == 404, (method, address)
        assert plan.name.encode() not in response.content
    assert state(plan) == before


@pytest.mark.parametrize("kind", KINDS)
def test_anonymous_visitors_are_sent_to_sign_in(client, plan, items, kind):
    before = state(plan)
    for method, address, data in write_requests(plan, items, kind):
        response = getattr(client, method)(address, data)
        assert response.status_code == 302
        assert response.headers["Location"].startswith("/accounts/login/")
    assert state(plan) == before


@pytest.mark.parametrize("kind", KINDS)
def test_an_item_of_another_plan_is_404_to_a_member_of_this_one(request, plan, items, kind):
    who = persona(request, kind)
    other = create_plan("Competitor plan", "other")
    theirs = {
        "choice": lambda: StrategicChoice.objects.create(plan=other, title="Secret choice"),
        "assumption": lambda: Assumption.objects.create(
            choice=StrategicChoice.objects.create(plan=other, title="Secret choice"),
            statement="Secret",
        ),
        "initiative": lambda: BTInitiative.objects.create(plan=other, title="Secret"),
        "stage": lambda: other.stages.first(),
    }[kind]()
    kind_name = f"planning:{kind}"
    for action, method in [("", "get"), ("_edit", "get"), ("_delete", "post"), ("_move", "post")]:
        response = getattr(who.client, method)(
            reverse(kind_name + action, args=[plan.slug, theirs.pk]), {"direction": "down"}
        )
        assert response.status_code == 404
    if kind == "assumption":
        response = who.client.get(
            reverse("planning:assumption_new", args=[plan.slug, theirs.choice_id])
        )
        assert response.status_code == 404


@pytest.mark.parametrize("kind", KINDS)
def test_wrong_methods_are_refused(request, plan, items, kind):
    who = persona(request, kind)
    item = items[kind][0]
    before = state(plan)
    assert who.client.put(new_url(plan, kind, items)).status_code == 405
    assert who.client.put(url(plan, "edit", item)).status_code == 405
    assert who.client.get(url(plan, "delete", item)).status_code == 405
    assert who.client.get(url(plan, "move", item)).status_code == 405
    assert who.client.post(url(plan, "", item)).status_code == 405
    assert state(plan) == before


# --- the board: filters, labels, buttons ------------------------------------------------------


def card_titles(html: str) -> set[str]:
    return set(re.findall(r'<h3 id="choice-\d+-in-[^"]+-title">([^<]+)</h3>', html))


@pytest.fixture
def varied(plan, items, cmo, bu_leader):
    """Choices that differ in business unit, owner, status and horizon."""
    loyalty, delivery = items["choice"]
    StrategicChoice.objects.filter(pk=delivery.pk).update(owner=bu_leader.membership)
    loyalty.refresh_from_db()
    return {"loyalty": loyalty.title, "delivery": delivery.title}


@pytest.mark.parametrize(
    ("params", "shown"),
    [
        ({"bu": "Retail"}, "loyalty"),
        ({"bu": "Logistics"}, "delivery"),
        ({"status": "adopted"}, "delivery"),
        ({"horizon": "now"}, "loyalty"),
        ({"owner": "cmo"}, "loyalty"),
        ({"owner": "bu_leader", "horizon": "next"}, "delivery"),
    ],
)
def test_board_filters_show_only_matching_choices_and_stay_in_the_url(
    request, plan, varied, cmo, params, shown
):
    if "owner" in params:
        params = {**params, "owner": request.getfixturevalue(params["owner"]).membership.pk}
    response = cmo.client.get(board_url(plan), params)
    html = response.content.decode()
    assert response.status_code == 200
    assert card_titles(html) == {varied[shown]}
    query = "&amp;".join(f"{k}={v}" for k, v in params.items())
    # The live refresh re-fetches the board with the same filters.
    assert f'data-board-url="{board_url(plan)}?{query}"' in html
    for name, value in params.items():
        assert re.search(rf'<option value="{value}"\s+selected>', html), name
    assert "Clear filters" in html

    fragment = cmo.client.get(board_url(plan), params, headers=HTMX).content.decode()
    assert "<html" not in fragment
    assert card_titles(fragment) == {varied[shown]}


def test_no_filter_shows_every_choice(plan, varied, cmo):
    html = cmo.client.get(board_url(plan)).content.decode()
    assert card_titles(html) == set(varied.values())
    assert "Clear filters" not in html


def test_a_filter_that_matches_nothing_shows_no_choice(plan, varied, cmo):
    html = cmo.client.get(board_url(plan), {"bu": "Nowhere"}).content.decode()
    assert card_titles(html) == set()


def labels(html: str) -> set[str]:
    return set(re.findall(r"<label[^>]*>([^<]+)</label>", html))


def test_the_forms_have_the_labels_people_look_for(plan, items, cmo, facilitator):
    choice = cmo.client.get(new_url(plan, "choice", items)).content.decode()
    assert {"Title", "Stages", "Owner", "Business unit", "Horizon", "Status"} <= labels(choice)
    assumption = cmo.client.get(new_url(plan, "assumption", items)).content.decode()
    assert {"Statement", "Importance", "Evidence", "Owner", "Threshold"} <= labels(assumption)
    assert {"Test: metric", "Comparator", "Upper threshold", "Event type"} <= labels(assumption)
    initiative = cmo.client.get(new_url(plan, "initiative", items)).content.decode()
    assert {"Title", "Stages", "Status", "Cost estimate"} <= labels(initiative)
    stage = facilitator.client.get(new_url(plan, "stage", items)).content.decode()
    assert "Stage name" in labels(stage)


def buttons(html: str) -> set[str]:
    return set(re.findall(r"<(?:button|a)\b[^>]*>([^<]+)</(?:button|a)>", html))


EDITOR_BUTTONS = {"Add choice", "Add assumption", "Add initiative", "Edit", "Delete"}


@pytest.mark.parametrize("persona_name", ["cmo", "cio", "bu_leader", "facilitator"])
def test_editors_see_the_buttons_to_edit(request, plan, items, persona_name):
    who = request.getfixturevalue(persona_name)
    board = who.client.get(board_url(plan)).content.decode()
    assert buttons(board) >= EDITOR_BUTTONS
    assert ("Add stage" in buttons(board)) is (persona_name == "facilitator")
    assert ("Rename" in buttons(board)) is (persona_name == "facilitator")
    form = who.client.get(url(plan, "edit", items["choice"][0])).content.decode()
    assert {"Save", "Cancel"} <= buttons(form)


def test_observers_see_no_button_to_edit(plan, items, observer):
    board = observer.client.get(board_url(plan)).content.decode()
    assert not buttons(board) & (EDITOR_BUTTONS | {"Save", "Cancel", "Add stage", "Rename"})
    assert "Launch a loyalty subscription" in board


# --- the test preview -------------------------------------------------------------------------

AS_OF = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def events(plan):
    """40 customers buy once in early January, 10 of them again on 20 January; a visit on 1 March."""
    first = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC)
    rows = [(f"c{i:02}", first + dt.timedelta(hours=i), "purchase") for i in range(40)]
    rows += [
        (f"c{i:02}", dt.datetime(2026, 1, 20, 9, tzinfo=dt.UTC), "purchase") for i in range(10)
    ]
    rows.append(("c00", AS_OF, "visit"))
    Event.objects.bulk_create(
        Event(
            plan=plan,
            customer_id=c,
            occurred_at=at,
            event_type=t,
            value=10,
            dedupe_key=Event.identity(f"e{n}", {}, 0),
        )
        for n, (c, at, t) in enumerate(rows)
    )


def preview(who, plan: Plan, **fields) -> str:
    data = {"statement": "", "importance": "3", "evidence": "1", "min_sample": "30", **fields}
    response = who.client.post(reverse("insights:test_preview", args=[plan.slug]), data)
    assert response.status_code == 200
    html = response.content.decode()
    assert "<html" not in html
    return html


def test_preview_tells_what_the_test_would_say_today(plan, items, events, cmo):
    html = preview(
        cmo,
        plan,
        metric="repeat_rate",
        param_event_type="purchase",
        param_within_days="30",
        comparator=">=",
        threshold="50",
    )
    # 10 of 40 mature new customers came back: 25%, the whole interval below 50%.
    assert '<strong class="observed">25.0%</strong>' in html
    assert "n = 40" in html
    assert 'data-preview-status="broken"' in html
    assert "target ≥ 50.0%" in html
    assert "1 Mar 2026" in html


def test_preview_of_a_count_holds(plan, items, events, cmo):
    html = preview(
        cmo,
        plan,
        metric="active_customers",
        param_event_type="purchase",
        comparator="between",
        threshold="30",
        threshold_high="50",
    )
    assert '<strong class="observed">40</strong>' in html
    assert 'data-preview-status="holds"' in html


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        (
            {
                "metric": "repeat_rate",
                "param_event_type": "purchase",
                "param_within_days": "30",
                "comparator": "between",
                "threshold": "20",
            },
            "“Between” needs a low and a high threshold.",
        ),
        (
            {
                "metric": "repeat_rate",
                "param_event_type": "purchase",
                "comparator": ">=",
                "threshold": "30",
            },
            "Test parameters: repeat_rate needs “within_days”.",
        ),
        ({"metric": "nps", "comparator": ">="}, "A test needs a threshold."),
    ],
)
def test_preview_explains_what_is_missing(plan, items, events, cmo, fields, problem):
    html = preview(cmo, plan, **fields)
    assert "This test cannot run yet" in html
    assert problem in html
    assert "data-preview-status" not in html


def test_preview_without_a_metric_invites_to_choose_one(plan, items, cmo):
    assert "Choose a metric" in preview(cmo, plan, metric="")


def test_preview_is_for_editors_of_the_plan(plan, items, observer, outsider):
    address = reverse("insights:test_preview", args=[plan.slug])
    assert observer.client.post(address, {"metric": "nps"}).status_code == 403
    assert outsider.client.post(address, {"metric": "nps"}).status_code == 404
    assert observer.client.get(address).status_code == 405
