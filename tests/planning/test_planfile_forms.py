"""A plan file is checked by the forms the board uses: what a form refuses, the file refuses (in
the form's words, at its place in the file), and what a form stores, the file stores."""

from __future__ import annotations

from typing import Any

import pytest

from planning.forms import AssumptionForm, ChoiceForm, InitiativeForm
from planning.models import Assumption, BTInitiative, Plan, StrategicChoice
from planning.planfile import PlanFileError, export_plan, import_plan

pytestmark = pytest.mark.django_db


def imports(data: dict[str, Any]) -> bool:
    try:
        import_plan({"name": "Parity", "slug": "parity", **data})
    except PlanFileError:
        return False
    return True


def test_a_reserved_short_name_is_refused_as_the_new_plan_form_refuses_it():
    with pytest.raises(PlanFileError) as refused:
        import_plan({"name": "New", "slug": "new"})

    assert refused.value.errors == ["slug: “new” is reserved; choose another short name."]
    assert not Plan.objects.exists()


def test_names_and_times_are_stored_as_the_board_and_the_settings_page_store_them():
    plan, _ = import_plan(
        {
            "name": "Growth",
            "slug": "growth",
            "stages": [" Buy ", "Use"],
            "retest_schedule": {"cadence": "daily", "time": "7:30"},
            "choices": [
                {
                    "title": "  Loyalty subscription ",
                    "stages": ["buy"],
                    "assumptions": [{"statement": " Members renew "}],
                }
            ],
        }
    )

    exported = export_plan(plan)
    assert exported["stages"] == ["Buy", "Use"]
    assert exported["retest_schedule"]["time"] == "07:30"
    choice = exported["choices"][0]
    assert (choice["title"], choice["stages"]) == ("Loyalty subscription", ["Buy"])
    assert choice["assumptions"][0]["statement"] == "Members renew"


def test_two_titles_the_board_holds_for_one_are_refused_where_the_second_is():
    data = {"name": "Growth", "slug": "growth"}
    data["choices"] = [{"title": "Loyalty"}, {"title": "Loyalty "}]

    with pytest.raises(PlanFileError) as refused:
        import_plan(data)

    assert refused.value.errors == [
        'choices[1].title: "Loyalty " is already at choices[0].title; each must be unique'
    ]
    assert not StrategicChoice.objects.exists()


@pytest.mark.parametrize(
    "title", ["Loyalty", "x" * 200, "x" * 201, "Loyalty\nsubscription", "Tab\there", "  "]
)
def test_the_file_takes_a_title_exactly_when_the_choice_form_does(plan, title):
    form = ChoiceForm(
        {"title": title, "horizon": "now", "status": "proposed"},
        plan=plan,
        instance=StrategicChoice(plan=plan),
    )

    assert imports({"choices": [{"title": title}]}) == form.is_valid()


@pytest.mark.parametrize("importance", [0, 1, 5, 6, 70000])
@pytest.mark.parametrize("min_sample", [0, 1, 2**31 - 1])
def test_the_file_takes_an_assumption_exactly_when_the_assumption_form_does(
    plan, importance, min_sample
):
    choice = StrategicChoice.objects.create(plan=plan, title="Loyalty")
    test = {"metric": "nps", "comparator": ">=", "threshold": 20, "min_sample": min_sample}
    form = AssumptionForm(
        {"statement": "Members recommend us", "importance": importance, "evidence": 1} | test,
        plan=plan,
        instance=Assumption(choice=choice),
    )
    assumption = {"statement": "Members recommend us", "importance": importance, "test": test}

    assert imports({"choices": [{"title": "Loyalty", "assumptions": [assumption]}]}) == (
        form.is_valid()
    )


@pytest.mark.parametrize("cost", [0, 1234.5, -1, 0.125, 10**12 - 1, 10**12])
def test_the_file_takes_a_cost_exactly_when_the_initiative_form_does(plan, cost):
    form = InitiativeForm(
        {"title": "Billing", "status": "proposed", "cost_estimate": cost},
        plan=plan,
        instance=BTInitiative(plan=plan),
    )

    assert imports({"bt_initiatives": [{"title": "Billing", "cost_estimate": cost}]}) == (
        form.is_valid()
    )
