"""What only a browser shows of the board's comments and conflicts: "@" suggests members from the
keyboard, and the conflict view fits the board's narrow column with "Yours" in sight."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from planning.models import Assumption, Comment, StrategicChoice
from planning.services import create_item

from .pages import board_url, card, column, edit_button, is_save, live, save

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LOYALTY = "Launch a loyalty subscription"
REPEAT = "At least 30% of first-time buyers buy again within 90 days"


@pytest.fixture
def loyalty(plan, cmo) -> StrategicChoice:
    buy = plan.stages.get(name="Buy")
    choice = create_item("choice", plan, cmo.user, {"title": LOYALTY, "stages": [buy.pk]})
    create_item("assumption", plan, cmo.user, {"statement": REPEAT}, choice_id=choice.pk)
    return choice


def test_at_suggests_members_and_the_keyboard_chooses_one(
    browsing, plan, cmo, cio, facilitator, loyalty
):
    page = browsing.page_for(cmo, board_url(plan))
    choice = card(column(page, "Buy"), LOYALTY)
    choice.get_by_role("button", name=re.compile(rf"omments on {re.escape(LOYALTY)}$")).click()
    box = page.get_by_role("textbox", name="Your comment")
    expect(box).to_be_focused()
    suggestions = page.get_by_role("listbox", name="Members to mention")
    expect(suggestions).to_be_hidden()

    box.press_sequentially("Can @")
    # Everyone but oneself, the first one active.
    expect(suggestions.get_by_role("option")).to_have_count(2)
    box.press_sequentially("ma")
    maya = suggestions.get_by_role("option", name="Maya Tester")
    expect(suggestions.get_by_role("option")).to_have_count(1)
    expect(maya).to_have_attribute("aria-selected", "true")
    expect(box).to_have_attribute("aria-activedescendant", maya.get_attribute("id"))

    box.press("Backspace")
    box.press("Backspace")
    expect(suggestions.get_by_role("option")).to_have_count(2)
    box.press("ArrowDown")
    active = suggestions.locator("[aria-selected=true]")
    expect(active).to_have_count(1)
    expect(box).to_have_attribute("aria-activedescendant", active.get_attribute("id"))
    box.press("ArrowUp")
    expect(box).to_have_attribute(
        "aria-activedescendant", suggestions.get_by_role("option").first.get_attribute("id")
    )
    first = suggestions.get_by_role("option").first.get_attribute("data-username")
    box.press("Enter")
    expect(suggestions).to_be_hidden()
    expect(box).to_have_value(f"Can @{first} ")

    # Escape closes the suggestions, not the comment box.
    box.press_sequentially("and @")
    expect(suggestions).to_be_visible()
    box.press("Escape")
    expect(suggestions).to_be_hidden()
    expect(box).to_be_visible()
    box.press("Backspace")
    box.press_sequentially("check the billing?")
    page.get_by_role("button", name="Comment", exact=True).click()

    body = f"Can @{first} and check the billing?"
    expect(page.locator(".comment-body").first).to_have_text(body)
    expect(page.locator(".comment-body .mention")).to_have_text(f"@{first}")
    assert Comment.objects.get().body == body


def test_the_conflict_view_fits_its_board_column_with_yours_in_sight(
    browsing, plan, cmo, cio, loyalty
):
    a = browsing.page_for(cmo, board_url(plan))
    b = browsing.page_for(cio, board_url(plan))
    live(a, 2)
    live(b, 2)
    for page in (a, b):
        edit_button(card(column(page, "Buy"), REPEAT)).click()
    a_form = a.get_by_role("article", name="Edit assumption")
    b_form = b.get_by_role("article", name="Edit assumption")
    theirs = "At least 25% of first-time buyers buy again within 90 days of their first order"
    a_form.get_by_label("Statement").fill(theirs)
    save(a, a_form)
    mine = "At least 35% of first-time buyers buy again within 60 days of their first order"
    b_form.get_by_label("Statement").fill(mine)
    with b.expect_response(is_save) as response:
        b_form.get_by_role("button", name="Save").click()
    assert response.value.status == 409

    conflict = b.get_by_role("alert")
    row = conflict.get_by_role("row", name="Statement")
    yours = row.locator("td.mine")
    expect(yours).to_have_text(mine)
    expect(yours).to_be_in_viewport()
    # Inside its card, whole: neither cut off at the card's edge nor under the next column.
    box, card_box = yours.bounding_box(), b_form.bounding_box()
    assert (
        box["x"] >= card_box["x"] and box["x"] + box["width"] <= card_box["x"] + card_box["width"]
    )
    assert yours.evaluate("td => td.scrollWidth <= td.clientWidth")
    # In a column too narrow for three, each value says whose it is.
    assert yours.evaluate("td => getComputedStyle(td, '::before').content") == '"Yours"'
    theirs_cell = row.locator("td.theirs")
    assert theirs_cell.evaluate("td => getComputedStyle(td, '::before').content") == (
        '"Theirs (saved)"'
    )

    b_form.get_by_role("button", name="Keep mine").click()
    expect(card(column(b, "Buy"), mine)).to_be_visible()
    assert Assumption.objects.get(pk__isnull=False).statement == mine
