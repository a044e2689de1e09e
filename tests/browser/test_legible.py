"""What only a browser shows of the board's comments and conflicts: "@" suggests members from the
keyboard, and the conflict view fits the board's narrow column with "Yours" in sight. And what
a phone shows: the plan's current tab in its scrolling bar, the Customers page's charts and
filters whole; and the Customers tab's sub-pages keep its header and tabs where they are."""

from __future__ import annotations

import re
from itertools import pairwise

import pytest
from playwright.sync_api import expect

from insights.services import clv_jobs
from lifecycle.models import EventMapping
from planning.models import Assumption, Comment, Plan, StrategicChoice
from planning.services import create_item
from tests.insights.events import store
from tests.insights.test_metrics import generate

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


# --- on a phone -----------------------------------------------------------------------------------

PHONE = {"width": 390, "height": 844}
LAPTOP = {"width": 1440, "height": 900}
FADE_PX = 2.5 * 15  # app.css: each edge's fade is 2.5rem wide, the root font 15 px
# The plan's tab bar: which sides fade (their opacity, once faded in) and its and the tab's boxes.
TAB_BAR = """async nav => {
    await Promise.all(nav.getAnimations({subtree: true}).map(a => a.finished));  // the fades'
    const tab = nav.querySelector("[aria-current=page]").getBoundingClientRect();
    const bar = nav.getBoundingClientRect();
    const fade = side => getComputedStyle(nav, side).opacity;
    return {more: nav.dataset.more, start: fade("::before"), end: fade("::after"),
            barLeft: bar.left, barRight: bar.right, tabLeft: tab.left, tabRight: tab.right,
            scrolls: nav.scrollWidth > nav.clientWidth};
}"""


def tab_bar(page):
    nav = page.get_by_role("navigation", name="Plan")
    expect(nav).to_have_attribute("data-more", re.compile(r".*"))  # forms.js has looked at it
    return nav.evaluate(TAB_BAR)


@pytest.mark.parametrize(
    ("path", "current", "more"),
    [
        ("", "Board", "end"),
        ("sessions/", "Workshop", "start end"),
        ("settings/", "Settings", "start"),
    ],
)
def test_on_a_phone_the_current_tab_is_in_view_and_the_bar_fades_where_more_tabs_are(
    browsing, plan, cmo, path, current, more
):
    page = browsing.page_for(cmo)
    page.set_viewport_size(PHONE)
    page.goto(f"/plans/{plan.slug}/{path}")
    nav = page.get_by_role("navigation", name="Plan")
    expect(nav.get_by_role("link", name=current)).to_have_attribute("aria-current", "page")
    bar = tab_bar(page)
    assert bar["scrolls"] and bar["more"] == more
    # A fade only on the side(s) with more tabs, and the current tab clear of it, whole.
    assert bar["start"] == ("1" if "start" in more else "0")
    assert bar["end"] == ("1" if "end" in more else "0")
    start = bar["barLeft"] + (FADE_PX if "start" in more else 0)
    end = bar["barRight"] - (FADE_PX if "end" in more else 0)
    assert start <= bar["tabLeft"] and bar["tabRight"] <= end, bar

    # Scrolled to its end by hand, the bar fades at its start only.
    nav.evaluate("nav => { nav.scrollLeft = nav.scrollWidth; }")
    expect(nav).to_have_attribute("data-more", "start")
    # On a laptop every tab fits: nothing scrolls, nothing fades.
    page.set_viewport_size(LAPTOP)
    expect(nav).to_have_attribute("data-more", "")
    bar = tab_bar(page)
    assert not bar["scrolls"] and (bar["start"], bar["end"]) == ("0", "0")


EVENT_MAP = {
    "visit": "Discover",
    "signup": "Explore",
    "purchase": "Buy",
    "login": "Use",
    "support_ticket": "Ask",
    "survey": "Engage",
}


@pytest.fixture
def customers(plan) -> Plan:
    """A year of customers in every stage, and their lifetime value fitted (as a worker would)."""
    stages = {s.name: s for s in plan.stages.all()}
    EventMapping.objects.bulk_create(
        EventMapping(plan=plan, event_type=t, stage=stages[s]) for t, s in EVENT_MAP.items()
    )
    store(plan, generate())
    plan.refresh_from_db()
    request = clv_jobs.ValueRequest()
    clv_jobs.compute_customer_value(plan.pk, plan.data_version, request.as_json())
    assert clv_jobs.customer_value(plan, request).status == clv_jobs.Status.READY
    return plan


# Each x tick label of a chart: its text and box, and the chart's box.
X_LABELS = """chart => {
    const box = chart.getBoundingClientRect();
    const ticks = [...chart.querySelectorAll(".xaxislayer-above .xtick text")].map(t => {
        const r = t.getBoundingClientRect();
        return {text: t.textContent, left: r.left, right: r.right};
    });
    return {left: box.left, right: box.right, ticks};
}"""
# The selected option's text as the select draws it, and the room the select gives it.
SELECT_ROOM = """select => {
    const probe = document.createElement("span");
    probe.style.cssText = "position:absolute;white-space:nowrap;visibility:hidden";
    probe.style.font = getComputedStyle(select).font;
    probe.textContent = select.selectedOptions[0].text;
    document.body.append(probe);
    const text = probe.getBoundingClientRect().width;
    probe.remove();
    const style = getComputedStyle(select);
    return {text, room: select.clientWidth - parseFloat(style.paddingLeft)
                        - parseFloat(style.paddingRight)};
}"""
SELECT_ARROW_PX = 16  # the room Chromium keeps for a select's arrow


def x_labels(page, chart_id: str) -> dict:
    chart = page.locator(f"[data-chart={chart_id}]")
    expect(chart.locator("svg.main-svg").first).to_be_visible()
    return chart.evaluate(X_LABELS)


def test_on_a_phone_the_customers_charts_and_filters_are_whole(browsing, customers, cmo):
    page = browsing.page_for(cmo)
    page.set_viewport_size(PHONE)
    page.goto(f"/plans/{customers.slug}/customers/")
    expect(page.locator("[data-chart=p-alive-figure]")).to_be_visible()

    # The funnel's stage names all show, the last one too, inside its chart.
    funnel = x_labels(page, "funnel-figure")
    assert [t["text"] for t in funnel["ticks"]] == list(EVENT_MAP.values())
    for tick in funnel["ticks"]:
        assert funnel["left"] <= tick["left"] and tick["right"] <= funnel["right"], tick
    # P(alive)'s labels stand apart from each other, inside their chart.
    alive = x_labels(page, "p-alive-figure")
    ticks = alive["ticks"]
    for left, right in pairwise(ticks):
        assert left["right"] < right["left"], (left, right)
    assert alive["left"] <= ticks[0]["left"] and ticks[-1]["right"] <= alive["right"]
    assert [t["text"] for t in ticks] == ["0", "20", "40", "60", "80", "100"]

    # Each filter's choice reads whole: "All segments", not "All segment".
    filters = page.get_by_role("form", name="Which customers and when")
    for name in ("period", "segment", "channel", "event_type"):
        room = filters.locator(f"select[name={name}]").evaluate(SELECT_ROOM)
        assert room["text"] + SELECT_ARROW_PX <= room["room"], (name, room)


CUSTOMERS_TABS = ["Life cycle and value", "Imports", "Event map", "Data source"]


def test_the_customers_sub_pages_keep_the_header_and_tabs_in_place(browsing, customers, cmo):
    page = browsing.page_for(cmo)
    page.set_viewport_size(LAPTOP)
    page.goto(f"/plans/{customers.slug}/customers/")
    header, content = {}, {}
    for name in CUSTOMERS_TABS:
        page.get_by_role("navigation", name="Customers").get_by_role("link", name=name).click()
        subtabs = page.get_by_role("navigation", name="Customers")
        expect(subtabs.get_by_role("link", name=name)).to_have_attribute("aria-current", "page")
        header[name] = [
            page.locator(selector).bounding_box()
            for selector in ("h1", "nav[aria-label=Plan]", "nav[aria-label=Customers]")
        ]
        if name != CUSTOMERS_TABS[0]:
            below = page.locator("#main > :not(.plan-header, .back-to-room, .subtabs)")
            content[name] = below.evaluate_all("els => els.map(e => e.offsetWidth)")
    first = header[CUSTOMERS_TABS[0]]
    assert {name: boxes for name, boxes in header.items() if boxes != first} == {}
    # Below them, the sub-pages' own content keeps a reading width.
    assert {name: max(widths) for name, widths in content.items() if max(widths) > 1100} == {}
