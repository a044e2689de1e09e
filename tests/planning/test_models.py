"""The database refuses what the domain forbids (DOMAIN §1–§5), whoever writes."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from insights.models import AssumptionRun, Event
from lifecycle.models import EventMapping, Stage
from planning.models import (
    Assumption,
    BTInitiative,
    Comment,
    Membership,
    Plan,
    StrategicChoice,
    clean_metric_params,
)
from planning.services import create_plan

pytestmark = pytest.mark.django_db


def refused(create) -> bool:
    try:
        with transaction.atomic():
            create()
    except IntegrityError:
        return True
    return False


@pytest.fixture
def choice(plan):
    return StrategicChoice.objects.create(plan=plan, title="Launch a loyalty subscription")


def test_a_new_plan_gets_the_six_stages_in_order(plan):
    assert list(plan.stages.values_list("name", flat=True)) == [
        "Discover",
        "Explore",
        "Buy",
        "Use",
        "Ask",
        "Engage",
    ]
    assert list(plan.stages.values_list("position", flat=True)) == [0, 1, 2, 3, 4, 5]


def test_plan_slugs_are_unique(plan):
    assert refused(lambda: Plan.objects.create(name="Another", slug=plan.slug))


def test_one_membership_per_user_and_plan(plan, cmo):
    assert refused(lambda: Membership.objects.create(plan=plan, user=cmo.user, role="cio"))


def test_roles_are_the_five_of_the_domain(plan, outsider):
    assert refused(lambda: Membership.objects.create(plan=plan, user=outsider.user, role="ceo"))


def test_a_bu_leader_names_a_business_unit(plan, outsider):
    assert refused(
        lambda: Membership.objects.create(plan=plan, user=outsider.user, role="bu_leader")
    )
    Membership.objects.create(
        plan=plan, user=outsider.user, role="bu_leader", business_unit="Retail"
    )


def test_stage_names_are_unique_in_a_plan_whatever_the_case(plan):
    assert refused(lambda: Stage.objects.create(plan=plan, name="buy", position=9))
    other = create_plan("Other", "other")
    assert other.stages.filter(name="Buy").exists()


def test_event_map_is_lower_case_and_maps_each_type_once(plan):
    buy = plan.stages.get(name="Buy")
    mapping = EventMapping.objects.create(plan=plan, event_type=" Purchase ", stage=buy)
    assert mapping.event_type == "purchase"
    assert refused(lambda: EventMapping.objects.create(plan=plan, event_type="purchase", stage=buy))
    assert refused(
        lambda: EventMapping.objects.bulk_create(
            [EventMapping(plan=plan, event_type="Visit", stage=buy)]
        )
    )


def test_choice_titles_are_unique_in_a_plan_and_values_are_valid(plan, choice):
    assert refused(lambda: StrategicChoice.objects.create(plan=plan, title=choice.title))
    assert refused(lambda: StrategicChoice.objects.create(plan=plan, title="X", horizon="soon"))
    assert refused(lambda: StrategicChoice.objects.create(plan=plan, title="Y", status="maybe"))
    assert refused(lambda: StrategicChoice.objects.create(plan=plan, title=""))


@pytest.mark.parametrize("field", ["importance", "evidence"])
@pytest.mark.parametrize("value", [0, 6])
def test_importance_and_evidence_are_1_to_5(choice, field, value):
    assert refused(
        lambda: Assumption.objects.create(choice=choice, statement="S", **{field: value})
    )


@pytest.mark.parametrize(
    "test",
    [
        {"metric": "repeat_rate"},  # no comparator
        {"metric": "repeat_rate", "comparator": ">="},  # no threshold
        {"metric": "repeat_rate", "comparator": "between", "threshold": 0.2},  # no high
        {"metric": "repeat_rate", "comparator": "between", "threshold": 0.5, "threshold_high": 0.2},
        {"metric": "repeat_rate", "comparator": ">=", "threshold": 0.2, "threshold_high": 0.4},
        {"metric": "", "comparator": ">=", "threshold": 0.2},  # comparator without metric
        {"metric": "happiness", "comparator": ">=", "threshold": 0.2},
        {"metric": "nps", "comparator": ">=", "threshold": 10, "min_sample": 0},
        {"metric": "nps", "comparator": ">=", "threshold": 10, "window_days": 0},
    ],
)
def test_a_test_is_whole_or_absent(choice, test):
    assert refused(lambda: Assumption.objects.create(choice=choice, statement="S", **test))


def test_assumption_statements_are_unique_in_their_choice(choice):
    Assumption.objects.create(choice=choice, statement="S")
    assert refused(lambda: Assumption.objects.create(choice=choice, statement="S"))


def test_assumption_clean_explains_each_problem(plan, choice):
    assumption = Assumption(
        choice=choice,
        statement="S",
        metric="repeat_rate",
        params={"event_type": "purchase"},
        comparator="between",
        threshold=0.4,
    )
    with pytest.raises(ValidationError) as caught:
        assumption.full_clean()
    errors = caught.value.message_dict
    assert errors["params"] == ["repeat_rate needs “within_days”."]
    assert errors["threshold_high"] == ["“Between” needs a low and a high threshold."]


def test_metric_params_are_normalised_and_checked():
    assert clean_metric_params("nps", {}) == {"event_type": "survey"}
    assert clean_metric_params("repeat_rate", {"event_type": "Purchase", "within_days": 90}) == {
        "event_type": "purchase",
        "within_days": 90,
    }
    with pytest.raises(ValidationError, match="takes no parameter colour"):
        clean_metric_params("churn_rate", {"inactive_days": 90, "colour": "red"})
    with pytest.raises(ValidationError, match="whole number of days"):
        clean_metric_params("churn_rate", {"inactive_days": "ninety"})
    with pytest.raises(ValidationError, match="not a stage of this plan"):
        clean_metric_params("stage_reach", {"stage": "Sell"}, ["Discover", "Buy"])


def test_owner_must_be_a_member_of_the_same_plan(plan, choice, cmo):
    other = create_plan("Other", "other")
    stranger = Membership.objects.create(plan=other, user=cmo.user, role="cio")
    choice.owner = stranger
    with pytest.raises(ValidationError, match="member of this plan"):
        choice.full_clean()


def test_initiative_costs_are_never_negative(plan):
    assert refused(lambda: BTInitiative.objects.create(plan=plan, title="T", cost_estimate=-1))
    assert refused(lambda: BTInitiative.objects.create(plan=plan, title="T", status="someday"))


def test_a_comment_is_on_a_choice_or_an_assumption_never_both(plan, choice, cmo):
    assumption = Assumption.objects.create(choice=choice, statement="S")
    assert refused(lambda: Comment.objects.create(plan=plan, author=cmo.user, body="?"))
    assert refused(
        lambda: Comment.objects.create(
            plan=plan, author=cmo.user, body="?", choice=choice, assumption=assumption
        )
    )
    Comment.objects.create(plan=plan, author=cmo.user, body="Good", assumption=assumption)


def test_events_are_stored_once_per_identity(plan):
    key = Event.identity("ord-1", {}, 0)

    def store():
        Event.objects.create(
            plan=plan,
            customer_id="c1",
            occurred_at="2026-03-01T00:00:00Z",
            event_type="purchase",
            dedupe_key=key,
        )

    store()
    assert refused(store)
    assert Event.identity(None, {"a": 1}, 0) != Event.identity(None, {"a": 1}, 1)
    assert Event.identity(None, {"a": 1, "b": 2}, 0) == Event.identity(None, {"b": 2, "a": 1}, 0)


def test_runs_have_an_ordered_interval_and_a_real_status(plan, choice):
    assumption = Assumption.objects.create(choice=choice, statement="S")

    def run(**fields):
        return lambda: AssumptionRun.objects.create(
            assumption=assumption, plan=plan, previous_status="untested", **fields
        )

    assert refused(run(status="untested"))
    assert refused(run(status="holds", ci_low=0.5, ci_high=0.4))
    run(status="holds", ci_low=0.4, ci_high=0.5)()
