"""An assumption's test in the words a CMO writes (issue #10, DOMAIN §5, §6, §10): a share typed
in percent and stored as a fraction, each parameter labelled in words, the plan's event types and
stages offered, and the test said back in one sentence."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import pytest
from django.urls import reverse

from lifecycle.models import EventMapping
from planning.forms import AssumptionDataForm, AssumptionForm
from planning.models import Assumption, Plan, StrategicChoice
from planning.planfile import PlanFileError, export_plan, import_plan

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}
STATEMENT = "At least 40% of first-time buyers buy again within 90 days"


@pytest.fixture
def choice(plan) -> StrategicChoice:
    return StrategicChoice.objects.create(plan=plan, title="Launch a loyalty subscription")


@pytest.fixture
def event_map(plan) -> None:
    stages = {s.name: s for s in plan.stages.all()}
    for event_type, stage in [("visit", "Explore"), ("purchase", "Buy"), ("survey", "Engage")]:
        EventMapping.objects.create(plan=plan, event_type=event_type, stage=stages[stage])


def new_url(plan: Plan, choice: StrategicChoice) -> str:
    return reverse("planning:assumption_new", args=[plan.slug, choice.pk])


def edit_url(plan: Plan, assumption: Assumption) -> str:
    return reverse("planning:assumption_edit", args=[plan.slug, assumption.pk])


def typed(**test) -> dict:
    """The new-assumption form as a person fills it in."""
    return {"statement": STATEMENT, "importance": "4", "evidence": "2", "min_sample": "30"} | test


REPEAT = {"metric": "repeat_rate", "param_event_type": "purchase", "param_within_days": "90"}


class Page(HTMLParser):
    """The form's elements by id and name, the labels' words by the input they label, the
    options of each select and datalist, and the `%` signs."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.by_name: dict[str, dict] = {}
        self.labels: dict[str, str] = {}
        self.options: dict[str, list[str]] = {}
        self.units: list[dict] = []
        self._label: str | None = None
        self._list: str | None = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag in {"input", "select", "textarea"} and a.get("name"):
            self.by_name[a["name"]] = {"tag": tag, **a}
        if tag in {"select", "datalist"}:
            self._list = a.get("name") or a.get("id")
            self.options[self._list] = []
        elif tag == "option" and self._list:
            self.options[self._list].append(a.get("value") or "")
        elif tag == "label":
            self._label = a.get("for")
            self.labels[self._label] = ""
        elif tag == "span" and "data-share-unit" in a:
            self.units.append(a)

    def handle_data(self, data):
        if self._label:
            self.labels[self._label] += data

    def handle_endtag(self, tag):
        if tag == "label":
            self._label = None
        elif tag in {"select", "datalist"}:
            self._list = None

    def label_of(self, name: str) -> str:
        return self.labels[self.by_name[name]["id"]].strip()


def open_form(who, plan, url: str) -> Page:
    response = who.client.get(url, headers=HTMX)
    assert response.status_code == 200
    return Page(response.content.decode())


# --- shares in percent ---------------------------------------------------------------------


def test_a_share_typed_as_40_is_stored_as_0_4_and_shown_as_40_percent(plan, choice, cmo):
    response = cmo.client.post(
        new_url(plan, choice), typed(**REPEAT, comparator=">=", threshold="40")
    )

    assert response.status_code == 302
    stored = Assumption.objects.get(statement=STATEMENT)
    assert stored.threshold == 0.4
    assert stored.target_display == "≥ 40.0%"
    board = cmo.client.get(reverse("planning:board", args=[plan.slug])).content.decode()
    assert "target ≥ 40.0%" in board


def test_between_takes_both_shares_in_percent(plan, choice, cmo):
    test = typed(**REPEAT, comparator="between", threshold="27.3", threshold_high="45")

    assert cmo.client.post(new_url(plan, choice), test).status_code == 302

    stored = Assumption.objects.get(statement=STATEMENT)
    # 27.3 / 100 and 45 / 100 exactly as a person would write them, no float noise.
    assert (stored.threshold, stored.threshold_high) == (0.273, 0.45)
    assert stored.target_display == "between 27.3% and 45.0%"


@pytest.mark.parametrize(
    ("test", "field"),
    [
        ({"comparator": ">=", "threshold": "4000"}, "threshold"),
        ({"comparator": "<=", "threshold": "100.5"}, "threshold"),
        ({"comparator": ">=", "threshold": "-1"}, "threshold"),
        ({"comparator": "between", "threshold": "-5", "threshold_high": "40"}, "threshold"),
        ({"comparator": "between", "threshold": "40", "threshold_high": "150"}, "threshold_high"),
    ],
)
def test_a_share_outside_0_to_100_percent_is_refused_at_its_input(plan, choice, cmo, test, field):
    response = cmo.client.post(new_url(plan, choice), typed(**REPEAT, **test), headers=HTMX)

    assert response.status_code == 422
    html = response.content.decode()
    assert "A share is between 0% and 100%: type 40 for 40%." in html
    # Said once, at the input, and not mistaken for a missing threshold.
    assert html.count("A share is between 0% and 100%") == 1
    assert "A test needs a threshold." not in html
    # The message is in its input's own block.
    block = html.split(f'data-field="{field}"', 1)[1].split("data-field=", 1)[0]
    assert "A share is between 0% and 100%" in block
    assert not Assumption.objects.exists()


@pytest.mark.parametrize("threshold", ["0", "100"])
def test_0_and_100_percent_are_shares(plan, choice, cmo, threshold):
    test = typed(**REPEAT, comparator=">=", threshold=threshold)

    assert cmo.client.post(new_url(plan, choice), test).status_code == 302

    assert Assumption.objects.get().threshold == int(threshold) / 100


def test_a_count_or_an_amount_is_not_a_percentage(plan, choice, cmo):
    test = typed(
        metric="total_value", param_event_type="purchase", comparator=">=", threshold="4000"
    )

    assert cmo.client.post(new_url(plan, choice), test).status_code == 302

    stored = Assumption.objects.get()
    assert stored.threshold == 4000
    assert stored.target_display == "≥ 4,000.00"


@pytest.mark.parametrize(
    ("metric", "params"),
    [
        ("conversion_rate", {"from_event": "visit", "to_event": "purchase", "within_days": 14}),
        ("churn_rate", {"inactive_days": 60}),
        ("stage_reach", {"stage": "Buy"}),
    ],
)
def test_every_share_metric_takes_percent(plan, choice, cmo, metric, params):
    inputs = {f"param_{name}": str(value) for name, value in params.items()}
    test = typed(metric=metric, **inputs, comparator="<=", threshold="35")

    assert cmo.client.post(new_url(plan, choice), test).status_code == 302

    stored = Assumption.objects.get()
    assert (stored.params, stored.threshold) == (params, 0.35)


def share_assumption(choice, **fields) -> Assumption:
    return Assumption.objects.create(
        choice=choice,
        statement=STATEMENT,
        metric="repeat_rate",
        params={"event_type": "purchase", "within_days": 90},
        **({"comparator": ">=", "threshold": 0.273} | fields),
    )


def test_editing_a_share_shows_it_in_percent_with_its_sign(plan, choice, cmo):
    assumption = share_assumption(choice, comparator="between", threshold_high=0.4)

    page = open_form(cmo, plan, edit_url(plan, assumption))

    assert page.by_name["threshold"]["value"] == "27.3"
    assert page.by_name["threshold_high"]["value"] == "40"
    assert len(page.units) == 2
    assert all("hidden" not in unit for unit in page.units)


def test_an_edited_share_posted_back_untouched_keeps_its_value_exactly(plan, choice, cmo):
    assumption = share_assumption(choice)
    page = open_form(cmo, plan, edit_url(plan, assumption))
    data = {
        name: element.get("value", "")
        for name, element in page.by_name.items()
        if element["tag"] == "input"
    }
    data |= {"statement": STATEMENT, "metric": "repeat_rate", "comparator": ">="}

    response = cmo.client.post(edit_url(plan, assumption), data, headers=HTMX)

    assert response.status_code == 200, response.content.decode()
    assumption.refresh_from_db()
    assert (assumption.threshold, assumption.version) == (0.273, 1)  # nothing changed


def test_a_count_is_shown_as_it_is_without_a_percent_sign(plan, choice, cmo):
    assumption = Assumption.objects.create(
        choice=choice,
        statement="Purchases bring in at least 300",
        metric="total_value",
        params={"event_type": "purchase"},
        comparator=">=",
        threshold=300,
    )

    page = open_form(cmo, plan, edit_url(plan, assumption))

    assert float(page.by_name["threshold"]["value"]) == 300
    assert page.units and all("hidden" in unit for unit in page.units)


def test_the_metric_select_tells_the_page_which_metrics_are_shares(plan, choice, cmo):
    page = open_form(cmo, plan, new_url(plan, choice))

    shares = json.loads(page.by_name["metric"]["data-share-metrics"])
    assert sorted(shares) == ["churn_rate", "conversion_rate", "repeat_rate", "stage_reach"]


# --- a plan file keeps fractions (DOMAIN §6) -------------------------------------------------


def plan_file(threshold) -> dict:
    test = {
        "metric": "repeat_rate",
        "params": {"event_type": "purchase", "within_days": 90},
        "comparator": ">=",
        "threshold": threshold,
    }
    assumption = {"statement": STATEMENT, "test": test}
    choice = {"title": "Launch a loyalty subscription", "assumptions": [assumption]}
    return {"name": "FY2028", "slug": "fy2028", "choices": [choice]}


def test_a_plan_file_threshold_of_0_30_is_30_percent(db):
    plan, _ = import_plan(plan_file(0.30))

    stored = Assumption.objects.get(choice__plan=plan)
    assert stored.threshold == 0.3
    assert stored.target_display == "≥ 30.0%"
    exported = export_plan(plan)["choices"][0]["assumptions"][0]["test"]
    assert exported["threshold"] == 0.3


def test_a_plan_file_share_above_1_is_refused_in_its_words(db):
    with pytest.raises(PlanFileError) as refused:
        import_plan(plan_file(30))

    assert refused.value.errors == [
        "choices[0].assumptions[0].test.threshold: repeat_rate is a share: its threshold is "
        "between 0 and 1 in a plan file (0.30 for 30%)."
    ]


def test_the_data_form_takes_fractions_and_the_web_form_percent(plan, choice):
    data = {"statement": STATEMENT, "importance": 3, "evidence": 1, "min_sample": 30}
    test = {"metric": "repeat_rate", "comparator": ">=", "threshold": 0.3}
    params = {"event_type": "purchase", "within_days": 90}
    file_form = AssumptionDataForm(
        data | test | {"params": json.dumps(params)},
        plan=plan,
        instance=Assumption(choice=choice),
        tested=True,
    )
    web_form = AssumptionForm(
        data | test | {"param_event_type": "purchase", "param_within_days": 90},
        plan=plan,
        instance=Assumption(choice=choice),
    )

    assert file_form.is_valid(), file_form.errors
    assert web_form.is_valid(), web_form.errors
    assert file_form.cleaned_data["threshold"] == 0.3
    assert web_form.cleaned_data["threshold"] == 0.003  # 0.3% as typed


# --- parameters in words, from the plan's own event types and stages ---------------------------


def test_each_parameter_is_labelled_in_words(plan, choice, cmo):
    page = open_form(cmo, plan, new_url(plan, choice))

    assert {
        name: page.label_of(f"param_{name}")
        for name in [
            "event_type",
            "within_days",
            "from_event",
            "to_event",
            "inactive_days",
            "stage",
        ]
    } == {
        "event_type": "Event type",
        "within_days": "Within how many days",
        "from_event": "From event",
        "to_event": "To event",
        "inactive_days": "Inactive for how many days",
        "stage": "Stage",
    }
    assert "within_days" not in page.labels.values()


def test_event_types_are_offered_from_the_plan_event_map(plan, choice, cmo, event_map):
    other = Plan.objects.create(name="Other", slug="other")
    EventMapping.objects.create(
        plan=other, event_type="secret_event", stage=other.stages.create(name="X")
    )

    page = open_form(cmo, plan, new_url(plan, choice))

    lists = {
        page.by_name[f"param_{name}"]["list"] for name in ["event_type", "from_event", "to_event"]
    }
    assert len(lists) == 1
    assert page.options[lists.pop()] == ["purchase", "survey", "visit"]
    # Free text still: an event type not imported yet can be typed.
    assert page.by_name["param_event_type"]["tag"] == "input"


def test_a_free_text_event_type_is_still_taken(plan, choice, cmo, event_map):
    test = typed(metric="total_value", param_event_type="Refund", comparator=">=", threshold="1")

    assert cmo.client.post(new_url(plan, choice), test).status_code == 302

    assert Assumption.objects.get().params == {"event_type": "refund"}


def test_the_stage_is_chosen_among_the_plan_stages(plan, choice, cmo):
    page = open_form(cmo, plan, new_url(plan, choice))

    assert page.by_name["param_stage"]["tag"] == "select"
    assert page.options["param_stage"] == [
        "",
        *plan.stages.order_by("position").values_list("name", flat=True),
    ]
    refused = cmo.client.post(
        new_url(plan, choice),
        typed(metric="stage_reach", param_stage="Nowhere", comparator=">=", threshold="10"),
    )
    assert refused.status_code == 422
    assert not Assumption.objects.exists()


# --- the test in one sentence -------------------------------------------------------------------


def sentence(**fields) -> str:
    return Assumption(statement="s", min_sample=30, **fields).test_sentence


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            {"metric": "repeat_rate", "params": {"event_type": "purchase", "within_days": 90}},
            "The share of new customers with another purchase event within 90 days of their "
            "first is at least 30.0%.",
        ),
        (
            {
                "metric": "conversion_rate",
                "params": {"from_event": "trial_start", "to_event": "purchase", "within_days": 14},
            },
            "The share of customers with a trial_start event who have a purchase event within "
            "14 days is at least 30.0%.",
        ),
        (
            {"metric": "churn_rate", "params": {"inactive_days": 60}},
            "The share of customers inactive for 60 days or more (churned) is at least 30.0%.",
        ),
        (
            {"metric": "stage_reach", "params": {"stage": "Buy"}},
            "The share of active customers who reach the Buy stage is at least 30.0%.",
        ),
    ],
)
def test_a_share_test_reads_as_a_sentence(fields, expected):
    assert sentence(**fields, comparator=">=", threshold=0.3) == expected


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            {"metric": "active_customers", "params": {"event_type": "visit"}},
            "The number of customers with a visit event is at most 1,200.",
        ),
        (
            {"metric": "active_customers", "params": {}},
            "The number of active customers is at most 1,200.",
        ),
        (
            {"metric": "mean_value", "params": {"event_type": "purchase"}},
            "The mean value of a purchase event is at most 1,200.00.",
        ),
        (
            {"metric": "total_value", "params": {"event_type": "purchase"}},
            "The total value of purchase events is at most 1,200.00.",
        ),
        (
            {"metric": "nps", "params": {}},  # its default event type: survey
            "The Net Promoter Score of survey events is at most 1,200.",
        ),
    ],
)
def test_a_count_or_an_amount_reads_as_a_sentence(fields, expected):
    assert sentence(**fields, comparator="<=", threshold=1200) == expected


def test_between_filters_and_window_are_in_the_sentence():
    repeat = {"metric": "repeat_rate", "params": {"event_type": "purchase", "within_days": 90}}
    filtered = {"segment": "Retail", "channel": "web", "window_days": 180}

    assert sentence(
        **repeat, comparator="between", threshold=0.3, threshold_high=0.5, **filtered
    ) == (
        "The share of new customers with another purchase event within 90 days of their first "
        "is between 30.0% and 50.0%, in segment Retail, on channel web, over the last 180 days."
    )
    # Churn has its own periods and ignores the window (DOMAIN §5): not said.
    churn = {"metric": "churn_rate", "params": {"inactive_days": 60}}
    assert sentence(**churn, comparator="<=", threshold=0.2, **filtered) == (
        "The share of customers inactive for 60 days or more (churned) is at most 20.0%, "
        "in segment Retail, on channel web."
    )


def test_an_assumption_without_a_test_has_no_sentence():
    assert sentence(metric="") == ""


def test_the_assumption_page_says_the_test_in_a_sentence(plan, choice, cmo):
    assumption = share_assumption(choice, threshold=0.3, segment="Retail")

    page = cmo.client.get(reverse("insights:assumption", args=[plan.slug, assumption.pk]))

    assert page.status_code == 200
    assert (
        "The share of new customers with another purchase event within 90 days of their first "
        "is at least 30.0%, in segment Retail." in page.content.decode()
    )


def test_the_preview_says_the_test_in_a_sentence(plan, choice, cmo):
    response = cmo.client.post(
        reverse("insights:test_preview", args=[plan.slug]),
        typed(**REPEAT, comparator=">=", threshold="40", channel="web"),
        headers=HTMX,
    )

    assert response.status_code == 200
    html = response.content.decode()
    assert "<html" not in html
    assert (
        "The share of new customers with another purchase event within 90 days of their first "
        "is at least 40.0%, on channel web." in html
    )
    assert "target ≥ 40.0%" in html


def test_the_preview_refuses_a_share_outside_0_to_100_percent(plan, choice, cmo):
    response = cmo.client.post(
        reverse("insights:test_preview", args=[plan.slug]),
        typed(**REPEAT, comparator=">=", threshold="4000"),
    )

    html = response.content.decode()
    assert "This test cannot run yet" in html
    assert "Threshold: A share is between 0% and 100%: type 40 for 40%." in html
