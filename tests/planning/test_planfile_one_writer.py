"""One writer per model (#15): a plan file and the app write through the same services, so the
same rules hold whichever wrote. An assumption's verdict goes when its test changes, on the
board as in a file; members come and go through the members page's services."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest
from django.contrib.auth import get_user_model

from planning.models import Activity, Assumption, Membership, Plan, StrategicChoice
from planning.planfile import PlanFileError, export_plan, import_plan, start_plan_from_file
from planning.services import save_item, snapshot
from planning.services.people import MemberError, add_member

pytestmark = pytest.mark.django_db

REPEAT = "At least 30% of first-time buyers buy again within 90 days"

# A verdict as `insights` leaves it after a re-test, early warning included (DOMAIN §5, §10).
VERDICT = {
    "status": "holds",
    "observed": 0.41,
    "sample_size": 120,
    "ci_low": 0.33,
    "ci_high": 0.49,
    "last_run_at": dt.datetime(2026, 10, 31, 18, 22, tzinfo=dt.UTC),
    "drift_since": dt.date(2026, 8, 1),
    "drift_direction": "down",
    "drift_message": "Repeat rate has been falling since August: 41% → 36%",
}
# What an assumption holds that was never re-tested, written from DOMAIN §5 and the model.
NO_VERDICT = {
    "status": "untested",
    "observed": None,
    "sample_size": None,
    "ci_low": None,
    "ci_high": None,
    "last_run_at": None,
    "drift_since": None,
    "drift_direction": "",
    "drift_message": "",
}


def verdict_of(assumption: Assumption) -> dict[str, Any]:
    assumption.refresh_from_db()
    return {name: getattr(assumption, name) for name in VERDICT}


@pytest.fixture
def repeat(plan, cmo) -> Assumption:
    choice = StrategicChoice.objects.create(plan=plan, title="Launch a loyalty subscription")
    assumption = Assumption.objects.create(
        choice=choice,
        statement=REPEAT,
        owner=cmo.membership,
        metric="repeat_rate",
        params={"event_type": "purchase", "within_days": 90},
        comparator=">=",
        threshold=0.3,
        **VERDICT,
    )
    assert verdict_of(assumption) == VERDICT
    return assumption


def board_save(assumption: Assumption, actor, **changes: Any) -> Assumption:
    """Save an edit as the board's edit form does: from what it showed, with my changes."""
    assumption.refresh_from_db()
    base = snapshot(assumption)
    saved = save_item(
        assumption, actor, base_version=assumption.version, base=base, mine={**base, **changes}
    )
    assert isinstance(saved, Assumption)
    return saved


# --- the verdict of an old test -----------------------------------------------------------------

# A change of each field of the test (Assumption.TEST_FIELDS), each a test that still holds up.
TEST_CHANGES = {
    "metric": {"metric": "nps", "params": {"event_type": "survey"}, "threshold": 30},
    "params": {"params": {"event_type": "purchase", "within_days": 60}},
    "comparator": {"comparator": "<="},
    "threshold": {"threshold": 0.35},
    "threshold_high": {"comparator": "between", "threshold_high": 0.5},
    "min_sample": {"min_sample": 100},
    "segment": {"segment": "Students"},
    "channel": {"channel": "web"},
    "window_days": {"window_days": 180},
}


def test_every_field_of_the_test_has_a_change_here():
    assert set(TEST_CHANGES) == set(Assumption.TEST_FIELDS)


@pytest.mark.parametrize("field", list(TEST_CHANGES))
def test_a_board_save_that_changes_the_test_clears_its_verdict(repeat, cmo, field):
    saved = board_save(repeat, cmo.user, **TEST_CHANGES[field])

    assert verdict_of(saved) == NO_VERDICT
    assert {name: snapshot(saved)[name] for name in TEST_CHANGES[field]} == TEST_CHANGES[field]


def test_a_board_save_that_changes_the_threshold_clears_the_verdict(repeat, cmo):
    board_save(repeat, cmo.user, threshold=0.35)

    repeat.refresh_from_db()
    assert repeat.threshold == 0.35
    assert repeat.status == "untested"
    assert repeat.observed is None and repeat.sample_size is None and repeat.last_run_at is None
    assert repeat.ci_low is None and repeat.ci_high is None
    assert repeat.drift_since is None and not repeat.drift_direction and not repeat.drift_message
    assert not repeat.is_drifting


def test_a_board_save_that_leaves_the_test_alone_keeps_the_verdict(repeat, cmo):
    board_save(repeat, cmo.user, importance=5, statement=REPEAT + ", as a rule")

    assert verdict_of(repeat) == VERDICT
    assert repeat.importance == 5


def test_the_same_test_written_otherwise_is_the_same_test(repeat, cmo):
    """ "Purchase" is stored as "purchase" (DOMAIN §4): the test is the one that ran."""
    board_save(repeat, cmo.user, params={"event_type": "Purchase", "within_days": 90})

    assert verdict_of(repeat) == VERDICT


def test_a_plan_file_follows_the_same_rule(repeat, cmo):
    plan = repeat.choice.plan
    data = export_plan(plan)
    untouched = copy.deepcopy(data)
    untouched["choices"][0]["assumptions"][0]["importance"] = 5

    import_plan(untouched)

    assert verdict_of(repeat) == VERDICT
    changed = copy.deepcopy(untouched)
    changed["choices"][0]["assumptions"][0]["test"]["min_sample"] = 100

    import_plan(changed)

    assert verdict_of(repeat) == NO_VERDICT
    assert export_plan(plan) == changed


# --- members: the members page's services, their rules and their activity -----------------------


@pytest.fixture
def people(db) -> dict[str, Any]:
    user_model = get_user_model()
    return {
        name: user_model.objects.create_user(username=name, email=f"{name}@example.com")
        for name in ["fran", "ana", "raj"]
    }


def team_file(*members: dict[str, Any]) -> dict[str, Any]:
    return {"name": "Team plan", "slug": "team", "members": list(members)}


def member_rows(plan: Plan) -> list[tuple[str, str, str]]:
    rows = plan.memberships.select_related("user").order_by("pk")
    return [(m.user.get_username(), m.role, m.business_unit) for m in rows]


def member_activity(plan: Plan) -> list[tuple[str, str, Any, Any]]:
    rows = Activity.objects.filter(plan=plan, item_type="member").order_by("pk")
    return [(a.action, a.item_label, a.before, a.after) for a in rows]


def test_members_join_change_and_leave_through_the_members_services(people):
    fran = {"username": "fran", "role": "facilitator"}
    plan, _ = import_plan(team_file(fran, {"username": "ana", "role": "cmo"}), actor=people["fran"])
    raj = {"username": "raj", "role": "bu_leader", "business_unit": " Retail "}

    import_plan(team_file(fran, raj), actor=people["fran"])
    import_plan(team_file({**fran}, {**raj, "role": "observer"}), actor=people["fran"])

    assert member_rows(plan) == [("fran", "facilitator", ""), ("raj", "observer", "Retail")]
    assert member_activity(plan) == [
        ("created", "fran (Facilitator)", None, {"role": "facilitator", "business_unit": ""}),
        ("created", "ana (CMO)", None, {"role": "cmo", "business_unit": ""}),
        ("created", "raj (BU leader)", None, {"role": "bu_leader", "business_unit": "Retail"}),
        ("deleted", "ana (CMO)", {"role": "cmo", "business_unit": ""}, None),
        (
            "updated",
            "raj (Observer)",
            {"role": "bu_leader", "business_unit": "Retail"},
            {"role": "observer", "business_unit": "Retail"},
        ),
    ]
    assert set(Activity.objects.filter(plan=plan).values_list("actor", flat=True)) == {
        people["fran"].pk
    }


def test_a_file_cannot_demote_the_last_facilitator(people):
    plan, _ = import_plan(team_file({"username": "fran", "role": "facilitator"}))
    before = (export_plan(plan), Activity.objects.count())

    with pytest.raises(PlanFileError) as refused:
        import_plan(
            team_file({"username": "fran", "role": "cmo"}, {"username": "ana", "role": "cio"})
        )

    assert refused.value.errors == [
        "members[0].role: a plan needs at least one facilitator; "
        "make someone else facilitator first."
    ]
    assert (export_plan(plan), Activity.objects.count()) == before


def test_a_file_cannot_leave_out_the_last_facilitator(people):
    plan, _ = import_plan(team_file({"username": "fran", "role": "facilitator"}))
    before = export_plan(plan)

    with pytest.raises(PlanFileError) as refused:
        import_plan(team_file({"username": "ana", "role": "cmo"}))

    assert refused.value.errors == [
        'members: "fran" cannot leave the plan: a plan needs at least one facilitator; '
        "make someone else facilitator first."
    ]
    assert export_plan(plan) == before
    assert Membership.objects.filter(plan=plan, user=people["fran"]).exists()


def test_a_file_may_hand_facilitation_over_whatever_its_order(people):
    plan, _ = import_plan(
        team_file({"username": "fran", "role": "facilitator"}, {"username": "ana", "role": "cmo"})
    )

    # Fran steps down before the file names Ana facilitator; then Fran leaves.
    import_plan(
        team_file({"username": "fran", "role": "cmo"}, {"username": "ana", "role": "facilitator"})
    )
    assert member_rows(plan) == [("fran", "cmo", ""), ("ana", "facilitator", "")]
    import_plan(team_file({"username": "ana", "role": "facilitator"}))
    assert member_rows(plan) == [("ana", "facilitator", "")]


def test_a_missing_user_is_named_and_nothing_is_written(people):
    with pytest.raises(PlanFileError) as refused:
        import_plan(team_file({"username": "fran", "role": "facilitator"}, {"username": "zoe"}))

    assert 'members[1]: no user "zoe"' in refused.value.errors
    assert not Plan.objects.exists()
    assert not Activity.objects.exists()


def test_the_members_service_itself_wants_a_business_unit_for_a_bu_leader(plan, people):
    with pytest.raises(MemberError, match="A BU leader names the business unit"):
        add_member(plan, None, people["raj"], "bu_leader", "  ")
    assert not plan.memberships.exists()


def test_a_plan_started_from_a_file_has_its_uploader_join_as_facilitator(people):
    plan, left_out = start_plan_from_file(
        people["ana"], team_file({"username": "fran", "role": "facilitator"})
    )

    assert left_out == ["fran"]
    assert member_rows(plan) == [("ana", "facilitator", "")]
    assert member_activity(plan) == [
        ("created", "ana (Facilitator)", None, {"role": "facilitator", "business_unit": ""})
    ]
    assert Activity.objects.get(plan=plan, item_type="plan").actor == people["ana"]
