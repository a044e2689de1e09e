"""An assumption's test in the browser, as a CMO fills it in: a share typed in percent, only the
chosen metric's parameters on screen, each labelled in words, and the test said back in one
sentence."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from lifecycle.models import EventMapping
from planning.models import Assumption
from planning.services import create_item

from .pages import board_url, card, column, edit_button, save

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LOYALTY = "Launch a loyalty subscription"
STATEMENT = "At least 40% of first-time buyers buy again within 90 days"
PARAM_LABELS = [
    "Event type",
    "Within how many days",
    "From event",
    "To event",
    "Inactive for how many days",
    "Stage",
]
SENTENCE = (
    "The share of new customers with another purchase event within 90 days of their first "
    "is at least 40.0%."
)


@pytest.fixture
def loyalty(plan, cmo):
    buy = plan.stages.get(name="Buy")
    for event_type in ("purchase", "repurchase"):
        EventMapping.objects.create(plan=plan, event_type=event_type, stage=buy)
    return create_item("choice", plan, cmo.user, {"title": LOYALTY, "stages": [buy.pk]})


def visible_params(form) -> list[str]:
    return [label for label in PARAM_LABELS if form.get_by_label(label, exact=True).is_visible()]


def test_a_cmo_types_a_share_in_percent_and_sees_only_its_words(browsing, plan, cmo, loyalty):
    page = browsing.page_for(cmo, board_url(plan))
    card(column(page, "Buy"), LOYALTY).get_by_role("button", name="Add assumption").click()
    form = page.get_by_role("article", name="New assumption")
    form.get_by_label("Statement").fill(STATEMENT)

    # No metric yet: no parameter, no threshold on screen.
    metric = form.get_by_label("Test: metric")
    expect(metric).to_be_visible()
    assert visible_params(form) == []
    expect(form.get_by_label("Threshold", exact=True)).to_be_hidden()

    # Each metric shows its own parameters, in words; a share's threshold has its "%".
    percent = form.locator("[data-field=threshold] [data-share-unit]")
    metric.select_option(label="Churn rate")
    expect(form.get_by_label("Inactive for how many days")).to_be_visible()
    assert visible_params(form) == ["Inactive for how many days"]
    expect(percent).to_be_visible()
    metric.select_option(label="Conversion rate")
    expect(form.get_by_label("From event")).to_be_visible()
    assert visible_params(form) == ["Within how many days", "From event", "To event"]
    metric.select_option(label="Stage reach")
    expect(form.get_by_label("Stage", exact=True)).to_be_visible()
    assert visible_params(form) == ["Stage"]
    stage_options = form.get_by_label("Stage", exact=True).locator("option")
    expect(stage_options).to_have_text(
        ["Choose a stage…", "Discover", "Explore", "Buy", "Use", "Ask", "Engage"]
    )
    metric.select_option(label="Total value")
    expect(percent).to_be_hidden()
    assert visible_params(form) == ["Event type"]
    metric.select_option(label="Repeat rate")
    expect(form.get_by_label("Within how many days")).to_be_visible()
    assert visible_params(form) == ["Event type", "Within how many days"]
    expect(percent).to_be_visible()
    expect(form.get_by_text("within_days")).to_have_count(0)

    # The event types on offer are the plan's own (its event map).
    event_type = form.get_by_label("Event type", exact=True)
    offered = event_type.evaluate("input => [...input.list.options].map(o => o.value)")
    assert offered == ["purchase", "repurchase"]

    event_type.fill("purchase")
    form.get_by_label("Within how many days").fill("90")
    form.get_by_label("Comparator").select_option(label="at least")
    form.get_by_label("Threshold", exact=True).fill("40")
    expect(form.get_by_role("status")).to_contain_text(SENTENCE)
    save(page, form)

    # Saved as 40%: the card and the assumption's page say "≥ 40.0%", the database 0.4.
    saved = card(column(page, "Buy"), STATEMENT)
    expect(saved).to_contain_text("target ≥ 40.0%")
    assumption = Assumption.objects.get(statement=STATEMENT)
    assert (assumption.metric, assumption.threshold) == ("repeat_rate", 0.4)
    assert assumption.params == {"event_type": "purchase", "within_days": 90}

    # Opened again, the share reads 40, with its "%".
    edit_button(saved).click()
    form = page.get_by_role("article", name="Edit assumption")
    expect(form.get_by_label("Threshold", exact=True)).to_have_value("40")
    expect(form.locator("[data-field=threshold] [data-share-unit]")).to_be_visible()
    assert visible_params(form) == ["Event type", "Within how many days"]
    form.get_by_role("button", name="Cancel").click()

    card(column(page, "Buy"), STATEMENT).get_by_role("link", name=STATEMENT).click()
    expect(page.get_by_role("heading", name=STATEMENT)).to_be_visible()
    expect(page.locator("[data-test-sentence]")).to_have_text(SENTENCE)
    expect(page.locator(".test-line")).to_contain_text("target ≥ 40.0%")
