"""The live board as executives use it together: two browsers, one plan, what each one sees."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from planning.models import Activity, Assumption, StrategicChoice
from planning.services import create_item

from .pages import (
    LIVE_MS,
    assert_not_reloaded,
    board_url,
    card,
    column,
    edit_button,
    is_save,
    live,
    never_reloaded,
    save,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LOYALTY = "Launch a loyalty subscription"
REPEAT = "At least 30% of first-time buyers buy again within 90 days"


@pytest.fixture
def loyalty(plan, cmo) -> StrategicChoice:
    """A choice in the Buy column with one assumption, as a workshop leaves it."""
    buy = plan.stages.get(name="Buy")
    choice = create_item("choice", plan, cmo.user, {"title": LOYALTY, "stages": [buy.pk]})
    create_item("assumption", plan, cmo.user, {"statement": REPEAT}, choice_id=choice.pk)
    return choice


def test_a_change_reaches_the_other_board_live_around_an_open_form(
    browsing, plan, cmo, cio, loyalty
):
    a = browsing.page_for(cmo, board_url(plan))
    b = browsing.page_for(cio, board_url(plan))
    live(a, 2)
    live(b, 2)
    never_reloaded(b)

    # B starts renaming the existing choice and is interrupted mid-word.
    edit_button(card(column(b, "Buy"), LOYALTY)).click()
    b_form = column(b, "Buy").get_by_role("article", name="Edit strategic choice")
    b_title = b_form.get_by_label("Title")
    expect(b_title).to_be_focused()
    b_title.press("Control+a")
    b_title.press_sequentially("Launch a members' club wi")

    def b_still_typing() -> None:
        expect(b_title).to_have_value("Launch a members' club wi")
        expect(b_title).to_be_focused()
        expect(
            column(b, "Buy").get_by_role("article", name="Edit strategic choice")
        ).to_be_visible()
        expect(b.get_by_role("alert")).to_have_count(0)  # not taken for a deleted item

    # A adds a choice in the Buy column...
    column(a, "Buy").get_by_role("button", name="Add choice").click()
    a_form = a.get_by_role("article", name="New strategic choice")
    a_form.get_by_label("Title").fill("Offer one-click reorder")
    save(a, a_form)
    expect(card(column(b, "Buy"), "Offer one-click reorder")).to_be_visible(timeout=LIVE_MS)
    b_still_typing()

    # ... renames it...
    edit_button(card(column(a, "Buy"), "Offer one-click reorder")).click()
    a_form = a.get_by_role("article", name="Edit strategic choice")
    a_form.get_by_label("Title").fill("Offer one-click reorder to members")
    save(a, a_form)
    expect(card(column(b, "Buy"), "Offer one-click reorder to members")).to_be_visible(
        timeout=LIVE_MS
    )
    expect(card(b, "Offer one-click reorder")).to_have_count(0)
    b_still_typing()

    # ... and gives it an assumption.
    reorder = card(column(a, "Buy"), "Offer one-click reorder to members")
    reorder.get_by_role("button", name="Add assumption").click()
    a_form = a.get_by_role("article", name="New assumption")
    a_form.get_by_label("Statement").fill("Members reorder at least twice a quarter")
    save(a, a_form)
    b_reorder = card(column(b, "Buy"), "Offer one-click reorder to members")
    expect(card(b_reorder, "Members reorder at least twice a quarter")).to_be_visible(
        timeout=LIVE_MS
    )
    b_still_typing()

    # B finishes the word and saves: nothing of either is lost.
    b_title.press_sequentially("th perks")
    save(b, b_form)
    expect(card(column(a, "Buy"), "Launch a members' club with perks")).to_be_visible()
    assert_not_reloaded(b)
    reorder = StrategicChoice.objects.get(title="Offer one-click reorder to members")
    assert list(reorder.stages.values_list("name", flat=True)) == ["Buy"]
    assert list(reorder.assumptions.values_list("statement", flat=True)) == [
        "Members reorder at least twice a quarter"
    ]
    assert StrategicChoice.objects.get(pk=loyalty.pk).title == "Launch a members' club with perks"


def test_two_people_save_the_same_assumption_and_the_second_chooses(
    browsing, plan, cmo, cio, loyalty
):
    assumption = Assumption.objects.get(statement=REPEAT)
    a = browsing.page_for(cmo, board_url(plan))
    b = browsing.page_for(cio, board_url(plan))
    live(a, 2)
    live(b, 2)
    for page in (a, b):
        edit_button(card(column(page, "Buy"), REPEAT)).click()
    a_form = a.get_by_role("article", name="Edit assumption")
    b_form = b.get_by_role("article", name="Edit assumption")
    theirs = "At least 25% of first-time buyers buy again within 90 days"
    a_form.get_by_label("Statement").fill(theirs)
    a_form.get_by_label("Importance").fill("5")
    save(a, a_form)

    mine = "At least 35% of first-time buyers buy again within 60 days"
    b_form.get_by_label("Statement").fill(mine)
    with b.expect_response(is_save) as response:
        b_form.get_by_role("button", name="Save").click()
    assert response.value.status == 409

    conflict = b.get_by_role("alert")
    expect(conflict).to_contain_text("Someone else saved this assumption while you were editing")
    row = conflict.get_by_role("row", name="Statement")
    expect(row.get_by_role("cell").nth(0)).to_have_text(theirs)
    expect(row.get_by_role("cell").nth(1)).to_have_text(mine)
    expect(conflict.get_by_role("row", name="Importance")).to_have_count(0)  # only A changed it
    expect(b_form.get_by_label("Importance")).to_have_value("5")  # A's change, kept in the form

    b_form.get_by_role("button", name="Keep mine").click()
    expect(card(column(b, "Buy"), mine)).to_contain_text("Importance 5/5")
    expect(card(column(a, "Buy"), mine)).to_contain_text("Importance 5/5", timeout=LIVE_MS)

    assumption.refresh_from_db()
    assert (assumption.statement, assumption.importance) == (mine, 5)
    updates = Activity.objects.filter(item_type="assumption", action="updated").order_by("id")
    assert [(u.actor.username, u.after) for u in updates] == [
        ("ana", {"statement": theirs, "importance": 5}),
        ("maya", {"statement": mine}),
    ]


def test_an_observer_watches_live_and_cannot_change_anything(
    browsing, plan, cmo, observer, loyalty
):
    a = browsing.page_for(cmo, board_url(plan))
    o = browsing.page_for(observer, board_url(plan))
    live(o, 2)
    expect(o.get_by_text("read only")).to_be_visible()
    # Buttons name their item ("Edit Launch a loyalty subscription"): none starts with these.
    for name in ("Edit", "Delete", "Add choice", "Add assumption", "Save"):
        expect(o.get_by_role("button", name=re.compile(rf"^{name}\b"))).to_have_count(0)

    edit_button(card(column(a, "Buy"), LOYALTY)).click()
    a_form = a.get_by_role("article", name="Edit strategic choice")
    a_form.get_by_label("Title").fill("Launch a paid loyalty subscription")
    save(a, a_form)
    expect(card(column(o, "Buy"), "Launch a paid loyalty subscription")).to_be_visible(
        timeout=LIVE_MS
    )
    expect(o.get_by_role("button", name=re.compile(r"^Edit\b"))).to_have_count(0)

    # The buttons are not the protection: a hand-made POST with a valid CSRF token is refused.
    status = o.evaluate(
        """async (url) => {
            const csrf = JSON.parse(document.body.getAttribute("hx-headers"))["X-CSRFToken"];
            const body = new URLSearchParams({title: "Observed and changed", version: "99",
                                              base: "{}", csrfmiddlewaretoken: csrf});
            const response = await fetch(url, {method: "POST", body: body,
                                               headers: {"X-CSRFToken": csrf}});
            return response.status;
        }""",
        f"/plans/{plan.slug}/choices/{loyalty.pk}/edit/",
    )
    assert status == 403
    assert StrategicChoice.objects.get(pk=loyalty.pk).title == "Launch a paid loyalty subscription"


def test_a_board_reconnects_by_itself_after_the_server_restarts(
    browsing, app_server, plan, cmo, cio, loyalty
):
    a = browsing.page_for(cmo, board_url(plan))
    b = browsing.page_for(cio, board_url(plan))
    live(a, 2)
    live(b, 2)
    never_reloaded(b)
    status = b.locator("#live-status")

    app_server.kill_web()
    expect(status).to_have_text("Connection lost, reconnecting…")
    # A change made while no server runs (a script, the back-office, a worker).
    use = plan.stages.get(name="Use")
    create_item(
        "choice", plan, cmo.user, {"title": "Partner with local couriers", "stages": [use.pk]}
    )
    app_server.start_web()

    expect(card(column(b, "Use"), "Partner with local couriers")).to_be_visible(timeout=8000)
    expect(card(column(a, "Use"), "Partner with local couriers")).to_be_visible(timeout=8000)
    expect(status).to_be_hidden()
    assert_not_reloaded(b)


def test_the_board_is_edited_with_the_keyboard_alone(browsing, plan, cmo, loyalty):
    a = browsing.page_for(cmo, board_url(plan))
    live(a, 1)
    edit = edit_button(card(column(a, "Buy"), LOYALTY))

    def tab_to(target, limit: int = 100) -> None:
        for _ in range(limit):
            a.keyboard.press("Tab")
            if target.evaluate("el => el === document.activeElement"):
                return
        raise AssertionError("Tab never reached the button")

    tab_to(edit)
    a.keyboard.press("Enter")
    form = a.get_by_role("article", name="Edit strategic choice")
    title = form.get_by_label("Title")
    expect(title).to_be_focused()  # focus lands in the form
    a.keyboard.press("Control+a")
    a.keyboard.type("Thrown away")
    a.keyboard.press("Escape")  # cancels
    expect(form).to_have_count(0)
    expect(card(column(a, "Buy"), LOYALTY)).to_be_visible()
    # Focus comes back to where it was, not to the top of the page.
    expect(edit).to_be_focused()

    a.keyboard.press("Enter")
    expect(title).to_be_focused()
    a.keyboard.press("Control+a")
    a.keyboard.type("Launch a loyalty programme")
    a.keyboard.press("Enter")  # saves
    expect(card(column(a, "Buy"), "Launch a loyalty programme")).to_be_visible()
    expect(form).to_have_count(0)
    assert StrategicChoice.objects.get(pk=loyalty.pk).title == "Launch a loyalty programme"
    expect(edit_button(card(column(a, "Buy"), "Launch a loyalty programme"))).to_be_focused()

    # In the statement (a text area) Enter is a new line; Ctrl+Enter saves.
    assumption = card(column(a, "Buy"), REPEAT)
    tab_to(edit_button(assumption))
    a.keyboard.press("Enter")
    statement = a.get_by_role("article", name="Edit assumption").get_by_label("Statement")
    expect(statement).to_be_focused()
    a.keyboard.press("Control+End")
    a.keyboard.type(" of their first order")
    a.keyboard.press("Control+Enter")
    expect(card(column(a, "Buy"), REPEAT + " of their first order")).to_be_visible()
    assert Assumption.objects.get().statement == REPEAT + " of their first order"


def test_a_click_on_its_way_is_not_lost_when_the_board_refreshes(browsing, plan, cmo, loyalty):
    a = browsing.page_for(cmo, board_url(plan))
    live(a, 1)
    # A clicks Edit; the form is slow to come (held here) while someone else's change arrives.
    held = []
    a.route("**/choices/*/edit/**", lambda route: held.append(route))
    edit_button(card(column(a, "Buy"), LOYALTY)).click()
    while not held:
        a.wait_for_timeout(20)  # Playwright hands the request over while it waits
    use = plan.stages.get(name="Use")
    with a.expect_response(lambda r: r.url.startswith(f"{browsing.app.url}{board_url(plan)}?")):
        create_item("choice", plan, cmo.user, {"title": "Deliver in an hour", "stages": [use.pk]})
    held[0].continue_()
    a.unroute("**/choices/*/edit/**")
    expect(column(a, "Buy").get_by_role("article", name="Edit strategic choice")).to_be_visible()
    expect(card(column(a, "Use"), "Deliver in an hour")).to_be_visible()


def test_who_has_the_plan_open_and_who_is_editing_what(browsing, plan, cmo, cio, loyalty):
    a = browsing.page_for(cmo, board_url(plan))
    b = browsing.page_for(cio, board_url(plan))
    live(a, 2)
    live(b, 2)
    for page in (a, b):
        expect(page.locator("#presence")).to_contain_text("Ana Tester (CMO)", timeout=LIVE_MS)
        expect(page.locator("#presence")).to_contain_text("Maya Tester (CIO)", timeout=LIVE_MS)

    # B opens the choice to edit it: A sees who is at it, on that card.
    edit_button(card(column(b, "Buy"), LOYALTY)).click()
    b_form = column(b, "Buy").get_by_role("article", name="Edit strategic choice")
    expect(b_form.get_by_label("Title")).to_be_focused()
    a_card = card(column(a, "Buy"), LOYALTY)
    expect(a_card.locator(".editing-by")).to_have_text(
        "Maya Tester (CIO) is editing", timeout=LIVE_MS
    )
    expect(b.locator(".editing-by")).to_have_count(0)  # nobody is told about themself

    # B cancels: the note goes away.
    b_form.get_by_label("Title").press("Escape")
    expect(b_form).to_have_count(0)
    expect(a_card.locator(".editing-by")).to_have_count(0, timeout=LIVE_MS)

    # B closes the board: A sees B leave.
    b.close()
    expect(a.locator("#presence")).not_to_contain_text("Maya Tester", timeout=5000)


def test_past_a_persons_limit_of_live_boards_the_board_says_why(browsing, plan, cmo, loyalty):
    """The ninth board of one person (LIVE_MAX_STREAMS_PER_USER, 8) is refused with a 429: the
    page reads why from the server and shows it, and does not hammer the server meanwhile."""
    boards = [browsing.page_for(cmo, board_url(plan)) for _ in range(8)]
    for board in boards:
        live(board, 1)
    ninth = browsing.page_for(cmo)
    refused = []
    ninth.on("response", lambda r: refused.append(r.url) if r.status == 429 else None)
    ninth.goto(board_url(plan))
    expect(ninth.locator("#live-status")).to_have_text(
        "You have 8 live boards open, the most allowed: close one in another tab or window.",
        timeout=5000,
    )
    ninth.wait_for_timeout(3000)
    # The EventSource's refusal and the one probe that read its reason; no retry before 30 s.
    assert len(refused) <= 2, refused


def test_the_drifting_filter_shows_only_the_drifting_assumptions(browsing, plan, cmo, loyalty):
    """A CMO picks "Drifting" in the board's filter: only the assumptions drifting toward breaking
    their test remain, each with its arrow and since when; the plan health says how many."""
    import datetime as dt

    calm = "Members renew at least 60% of the time"
    create_item("assumption", plan, cmo.user, {"statement": calm}, choice_id=loyalty.pk)
    Assumption.objects.filter(statement=REPEAT).update(
        status="holds",
        drift_since=dt.date(2026, 8, 1),
        drift_direction="down",
        drift_message="Repeat rate has been falling since August: 41.0% → 36.0%",
    )
    a = browsing.page_for(cmo, board_url(plan))
    buy = column(a, "Buy")
    expect(buy.get_by_text(calm)).to_be_visible()
    expect(buy.get_by_text(REPEAT)).to_be_visible()

    filters = a.get_by_role("form", name="Filter the board")
    filters.locator("select[name=verdict]").select_option(label="Drifting")
    filters.get_by_role("button", name="Filter").click()
    expect(a).to_have_url(re.compile(r"[?&]verdict=drifting"))
    buy = column(a, "Buy")
    expect(buy.get_by_text(REPEAT)).to_be_visible()
    expect(buy.get_by_text(calm)).to_have_count(0)
    expect(buy.get_by_text("drifting since August")).to_be_visible()
