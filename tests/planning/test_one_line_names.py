"""Names are one line: a plan's name goes into e-mail subjects, where a line break cannot be.
New names with line breaks or control characters are refused; subjects are built so that a name
stored before (or anything else put in a subject) can never make an e-mail fail."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from planning.mail import subject_line
from planning.models import Plan, StrategicChoice, validate_one_line
from planning.planfile import PlanFileError, import_plan

pytestmark = pytest.mark.django_db

LINE_BREAK = "A name or title is one line of text: remove the line break."


def test_the_new_plan_form_refuses_a_name_with_a_line_break(outsider):
    response = outsider.client.post(
        reverse("planning:new_plan"), {"name": "Growth\r\nBcc: all@example.com", "slug": "growth"}
    )

    assert response.status_code == 400
    assert LINE_BREAK in response.content.decode()
    assert not Plan.objects.filter(slug="growth").exists()


def test_a_plan_file_with_a_line_break_in_the_name_is_refused(db):
    with pytest.raises(PlanFileError) as refused:
        import_plan({"name": "Growth\r\nBcc: all@example.com", "slug": "growth"})

    assert refused.value.errors == [f"name: {LINE_BREAK}"]
    assert not Plan.objects.filter(slug="growth").exists()


def test_a_plan_file_with_a_line_break_in_a_title_is_refused(db):
    data = {
        "name": "Growth",
        "slug": "growth",
        "choices": [{"title": "Loyalty\nsubscription"}],
        "bt_initiatives": [{"title": "Billing\u2028platform"}],
    }

    with pytest.raises(PlanFileError) as refused:
        import_plan(data)

    assert refused.value.errors == [
        f"choices[0].title: {LINE_BREAK}",
        f"bt_initiatives[0].title: {LINE_BREAK}",
    ]


def test_the_choice_form_refuses_a_title_with_a_line_break(plan, cmo):
    response = cmo.client.post(
        reverse("planning:choice_new", args=[plan.slug]),
        {"title": "Loyalty\r\nsubscription", "horizon": "now", "status": "proposed"},
    )

    assert response.status_code == 422
    assert LINE_BREAK in response.content.decode()
    assert not StrategicChoice.objects.exists()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("Growth\nplan", LINE_BREAK),
        ("Growth\rplan", LINE_BREAK),
        ("Growth\u2029plan", LINE_BREAK),
        ("Growth\x85plan", LINE_BREAK),
        ("Growth\tplan", "A name or title is one line of text: remove the tab."),
        (
            "Growth\x1bplan",
            "A name or title is one line of text: remove the invisible control character.",
        ),
    ],
)
def test_what_is_not_one_line_is_named(name, message):
    with pytest.raises(ValidationError) as refused:
        validate_one_line(name)
    assert refused.value.messages == [message]


def test_ordinary_names_are_one_line():
    for name in ["FY2027 growth plan", "Plan « 2027 » — Ventes", "成長計画"]:
        validate_one_line(name)


def test_a_subject_is_one_line_whatever_it_is_given():
    assert subject_line("FY2027\r\ngrowth\u2028\x0b\x0cplan:\t2 changed\x00") == (
        "FY2027 growth plan: 2 changed"
    )
    assert subject_line("  Ana   Tester mentioned you ") == "Ana Tester mentioned you"
