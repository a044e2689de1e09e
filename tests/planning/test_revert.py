"""Reverting a change from the activity: the revert is a change too, and never overwrites a
later change it cannot see."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse

from planning.models import Activity, Assumption, BTInitiative, StrategicChoice
from planning.services import (
    RevertError,
    create_item,
    delete_item,
    revert_activity,
    save_item,
    snapshot,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def loyalty(plan, cmo):
    choice = create_item(
        "choice",
        plan,
        cmo.user,
        {
            "title": "Launch a loyalty subscription",
            "stages": list(
                plan.stages.filter(name__in=["Buy", "Engage"]).values_list("pk", flat=True)
            ),
            "owner": cmo.membership.pk,
            "business_unit": "Retail",
            "rationale": "Repeat buyers are worth 3x first-time buyers.",
        },
    )
    for position, statement in enumerate(["Members buy again", "Members like the perks"]):
        create_item(
            "assumption",
            plan,
            cmo.user,
            {
                "statement": statement,
                "importance": 4 - position,
                "owner": cmo.membership.pk,
                "metric": "repeat_rate" if position == 0 else "",
                "params": {"event_type": "purchase", "within_days": 90} if position == 0 else {},
                "comparator": ">=" if position == 0 else "",
                "threshold": 0.3 if position == 0 else None,
            },
            choice_id=choice.pk,
        )
    return StrategicChoice.objects.get(pk=choice.pk)


def edit(item, actor, **changes):
    item = type(item).objects.get(pk=item.pk)
    base = snapshot(item)
    result = save_item(item, actor, base_version=item.version, base=base, mine={**base, **changes})
    assert isinstance(result, type(item))
    return Activity.objects.filter(item_id=item.pk, action="updated").first()


def revert_url(plan, entry) -> str:
    return reverse("planning:activity_revert", args=[plan.slug, entry.pk])


def page_after(response, who) -> str:
    """The activity page the revert redirects to, with its message."""
    assert response.status_code == 302
    return who.client.get(response.headers["Location"]).content.decode()


def test_reverting_an_update_puts_the_values_back(plan, loyalty, cmo, cio):
    before = snapshot(loyalty)
    update = edit(loyalty, cmo.user, status="adopted", rationale="Members spend more.")

    response = cio.client.post(revert_url(plan, update))

    assert response.headers["Location"] == reverse("planning:activity", args=[plan.slug])
    assert "Reverted: updated Launch a loyalty subscription." in page_after(response, cio)
    loyalty.refresh_from_db()
    assert snapshot(loyalty) == before
    assert loyalty.version == 3
    revert = Activity.objects.filter(plan=plan).first()
    assert (revert.action, revert.actor, revert.reverts) == ("updated", cio.user, update)
    assert revert.before == update.after and revert.after == update.before


def test_reverting_a_creation_deletes_the_item(plan, loyalty, cio):
    initiative = create_item("initiative", plan, cio.user, {"title": "Billing platform"})
    created = Activity.objects.get(item_type="initiative", action="created")

    response = cio.client.post(revert_url(plan, created))

    assert "Reverted: created Billing platform." in page_after(response, cio)
    assert not BTInitiative.objects.filter(pk=initiative.pk).exists()
    revert = Activity.objects.filter(plan=plan).first()
    assert (revert.action, revert.item_id, revert.reverts) == ("deleted", initiative.pk, created)


def test_reverting_the_deletion_of_a_choice_brings_back_its_assumptions(
    plan, loyalty, cmo, bu_leader
):
    Assumption.objects.filter(choice=loyalty, metric="repeat_rate").update(
        status="broken", observed=0.21, sample_size=400, ci_low=0.17, ci_high=0.25,
        last_run_at=dt.datetime(2026, 3, 1, tzinfo=dt.UTC),
    )  # fmt: skip
    choice_before = snapshot(loyalty)
    assumptions_before = [snapshot(a) for a in loyalty.assumptions.order_by("position")]
    delete_item(loyalty, cmo.user)
    deleted = Activity.objects.get(action="deleted", item_type="choice")
    assert not Assumption.objects.filter(choice__plan=plan).exists()

    response = bu_leader.client.post(revert_url(plan, deleted))

    assert "Reverted: deleted Launch a loyalty subscription." in page_after(response, bu_leader)
    restored = StrategicChoice.objects.get(plan=plan)
    assert snapshot(restored) == choice_before
    assert [snapshot(a) for a in restored.assumptions.order_by("position")] == assumptions_before
    tested = restored.assumptions.get(metric="repeat_rate")
    assert (tested.status, tested.observed, tested.sample_size) == ("broken", 0.21, 400)
    revert = Activity.objects.get(reverts=deleted)
    assert (revert.action, revert.item_type, revert.item_id) == ("created", "choice", restored.pk)
    # Its assumptions' return is recorded too, one activity each.
    assert (
        Activity.objects.filter(action="created", item_type="assumption", id__gt=revert.id).count()
        == 2
    )


def test_reverting_the_deletion_of_an_assumption(plan, loyalty, cmo):
    perks = loyalty.assumptions.get(statement="Members like the perks")
    before = snapshot(perks)
    delete_item(perks, cmo.user)
    deleted = Activity.objects.filter(action="deleted").first()
    revert = revert_activity(deleted, cmo.user)
    restored = Assumption.objects.get(choice=loyalty, statement="Members like the perks")
    assert snapshot(restored) == before
    assert (revert.item_id, revert.reverts) == (restored.pk, deleted)


def test_an_update_changed_again_since_is_not_reverted(plan, loyalty, cmo, cio):
    first = edit(loyalty, cmo.user, status="adopted")
    edit(loyalty, cio.user, status="retired")
    loyalty.refresh_from_db()
    before = (snapshot(loyalty), loyalty.version, Activity.objects.count())

    response = cmo.client.post(revert_url(plan, first))

    assert "Not reverted: It changed again since." in page_after(response, cmo)
    loyalty.refresh_from_db()
    assert (snapshot(loyalty), loyalty.version, Activity.objects.count()) == before


def test_other_fields_changed_since_do_not_stop_a_revert(plan, loyalty, cmo, cio):
    first = edit(loyalty, cmo.user, status="adopted")
    edit(loyalty, cio.user, rationale="Members spend 3x more.")
    revert_activity(first, cmo.user)
    loyalty.refresh_from_db()
    assert (loyalty.status, loyalty.rationale) == ("proposed", "Members spend 3x more.")


def test_an_update_undone_by_hand_already_has_nothing_to_revert(plan, loyalty, cmo):
    first = edit(loyalty, cmo.user, status="adopted")
    edit(loyalty, cmo.user, status="proposed")
    count = Activity.objects.count()
    with pytest.raises(RevertError, match="it is as it was before"):
        revert_activity(first, cmo.user)
    assert Activity.objects.count() == count


def test_a_deleted_item_cannot_be_updated_back(plan, loyalty, cmo):
    update = edit(loyalty, cmo.user, status="adopted")
    delete_item(loyalty, cmo.user)
    with pytest.raises(RevertError, match="revert its deletion first"):
        revert_activity(update, cmo.user)


def test_a_creation_reverted_twice_says_so(plan, loyalty, cmo):
    created = Activity.objects.get(action="created", item_type="choice")
    revert_activity(created, cmo.user)
    with pytest.raises(RevertError, match="deleted already"):
        revert_activity(created, cmo.user)


def test_an_assumption_whose_choice_is_gone_waits_for_its_choice(plan, loyalty, cmo):
    perks = loyalty.assumptions.get(statement="Members like the perks")
    delete_item(perks, cmo.user)
    deleted_assumption = Activity.objects.filter(action="deleted").first()
    delete_item(loyalty, cmo.user)
    with pytest.raises(RevertError, match="revert that deletion first"):
        revert_activity(deleted_assumption, cmo.user)


def test_a_title_taken_since_is_a_clear_error(plan, loyalty, cmo):
    delete_item(loyalty, cmo.user)
    deleted = Activity.objects.filter(action="deleted").first()
    create_item("choice", plan, cmo.user, {"title": "Launch a loyalty subscription"})
    count = Activity.objects.count()
    response = cmo.client.post(revert_url(plan, deleted))
    assert "Not reverted: Another item of this plan has the same name now" in page_after(
        response, cmo
    )
    assert Activity.objects.count() == count
    assert StrategicChoice.objects.filter(plan=plan).count() == 1


def test_relations_deleted_since_are_left_empty(plan, loyalty, cmo, bu_leader, facilitator):
    update = edit(loyalty, cmo.user, stages=[], owner=bu_leader.membership.pk)
    delete_item(plan.stages.get(name="Engage"), facilitator.user)
    cmo.membership.delete()  # the former owner left the plan
    revert_activity(update, facilitator.user)
    loyalty.refresh_from_db()
    assert [s.name for s in loyalty.stages.all()] == ["Buy"]
    assert loyalty.owner is None


def test_the_revert_of_a_revert_redoes_the_change(plan, loyalty, cmo):
    update = edit(loyalty, cmo.user, status="adopted")
    undo = revert_activity(update, cmo.user)
    redo = revert_activity(undo, cmo.user)
    loyalty.refresh_from_db()
    assert loyalty.status == "adopted"
    assert redo.reverts == undo


def test_a_stage_change_is_reverted_by_a_facilitator_only(plan, loyalty, cmo, facilitator):
    buy = plan.stages.get(name="Buy")
    edit(buy, facilitator.user, name="Purchase")
    renamed = Activity.objects.filter(item_type="stage").first()
    assert cmo.client.post(revert_url(plan, renamed)).status_code == 403
    buy.refresh_from_db()
    assert buy.name == "Purchase"
    assert facilitator.client.post(revert_url(plan, renamed)).status_code == 302
    buy.refresh_from_db()
    assert buy.name == "Buy"


def test_observers_cannot_revert(plan, loyalty, cmo, observer):
    update = edit(loyalty, cmo.user, status="adopted")
    count = Activity.objects.count()
    assert observer.client.post(revert_url(plan, update)).status_code == 403
    loyalty.refresh_from_db()
    assert loyalty.status == "adopted"
    assert Activity.objects.count() == count


def test_outsiders_get_404(plan, loyalty, cmo, outsider):
    update = edit(loyalty, cmo.user, status="adopted")
    response = outsider.client.post(revert_url(plan, update))
    assert response.status_code == 404
    assert plan.name.encode() not in response.content
    loyalty.refresh_from_db()
    assert loyalty.status == "adopted"


def test_an_activity_of_another_plan_is_404(plan, loyalty, cmo):
    from planning.services import create_plan

    other = create_plan("Competitor plan", "other")
    create_item("choice", other, None, {"title": "Secret"})
    theirs = Activity.objects.get(plan=other)
    assert cmo.client.post(revert_url(plan, theirs)).status_code == 404
    assert StrategicChoice.objects.filter(plan=other).exists()


def test_revert_takes_a_post_only(plan, loyalty, cmo):
    created = Activity.objects.get(action="created", item_type="choice")
    assert cmo.client.get(revert_url(plan, created)).status_code == 405
    assert StrategicChoice.objects.filter(pk=loyalty.pk).exists()


def test_a_move_is_not_revertible(plan, loyalty, cmo):
    from planning.services import move_item

    other = create_item("choice", plan, cmo.user, {"title": "Offer next-day delivery"})
    move_item(other, cmo.user, -1)
    moved = Activity.objects.get(action="moved")
    response = cmo.client.post(revert_url(plan, moved))
    assert "Not reverted: This kind of change cannot be reverted." in page_after(response, cmo)
