"""A workshop session as the room lives it (DOMAIN §11): a facilitator, two members and an observer,
each in their own browser, on one running session; what each one sees, and when."""

from __future__ import annotations

import datetime as dt
import re
import time

import pytest
from playwright.sync_api import Page, expect

from planning.models import (
    Assumption,
    MapPlacement,
    SessionStep,
    SessionVote,
    StepKind,
    StrategicChoice,
    WorkshopSession,
)
from planning.services import create_item
from planning.sessions import room
from planning.sessions.agenda import create_session

from .pages import LIVE_MS, board_url, live

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LOYALTY = "Launch a loyalty subscription"
REORDER = "Offer one-click reorder"
REPEAT = "At least 30% of first-time buyers buy again within 90 days"
SAME_DAY = "Offer same-day delivery"
BUNDLE = "Bundle refills with every order"

# Set up in a page before the facilitator acts: resolves with the moment (ms since the epoch)
# the step heading first reads `title`, or null after 5 s.
WATCH_HEADING = """title => {
  window.__followed = new Promise(resolve => {
    const reads = () => {
      const heading = document.getElementById("step-heading");
      return heading !== null && heading.textContent.trim() === title;
    };
    if (reads()) return resolve(Date.now());
    const observer = new MutationObserver(() => {
      if (reads()) { observer.disconnect(); resolve(Date.now()); }
    });
    observer.observe(document.body, {childList: true, subtree: true, characterData: true});
    setTimeout(() => { observer.disconnect(); resolve(null); }, 5000);
  });
}"""

# The moment (ms since the epoch) the facilitator's next click lands in the page.
CLICK_TIME = """() => document.addEventListener(
  "click", () => { window.__clickedAt = Date.now(); }, {capture: true, once: true}
)"""

# A hand-made POST with the page's own CSRF token, as a curious person types it in the console.
# HX-Request asks for the room as htmx gets it (refusals: 409 with the reason, not a redirect).
FORGED_POST = """async ([url, fields]) => {
  const csrf = JSON.parse(document.body.getAttribute("hx-headers"))["X-CSRFToken"];
  const body = new URLSearchParams({...fields, csrfmiddlewaretoken: csrf});
  const headers = {"X-CSRFToken": csrf, "HX-Request": "true"};
  const response = await fetch(url, {method: "POST", body: body, headers: headers});
  return [response.status, await response.text()];
}"""


@pytest.fixture
def workshop(plan, facilitator, cmo, cio, observer) -> WorkshopSession:
    """Two choices in Buy, one assumption, and a planned session from the workshop template."""
    buy = plan.stages.get(name="Buy")
    loyalty = create_item("choice", plan, cmo.user, {"title": LOYALTY, "stages": [buy.pk]})
    create_item("choice", plan, cio.user, {"title": REORDER, "stages": [buy.pk]})
    create_item(
        "assumption",
        plan,
        cmo.user,
        {"statement": REPEAT, "importance": 3, "evidence": 1},
        choice_id=loyalty.pk,
    )
    return create_session(
        plan,
        facilitator.user,
        title="Q1 planning workshop",
        date=dt.date.today(),
        template="workshop",
    )


def room_path(session: WorkshopSession) -> str:
    return f"/plans/{session.plan.slug}/sessions/{session.pk}/"


def action_path(session: WorkshopSession, action: str) -> str:
    return f"{room_path(session)}{action}/"


def step_of(session: WorkshopSession, kind: str, title: str | None = None) -> SessionStep:
    steps = session.steps.filter(kind=kind)
    return (steps.filter(title=title) if title else steps).order_by("position").first()


def run_at(session: WorkshopSession, step: SessionStep) -> None:
    """The facilitator has started the session and brought the room to `step` (set up here)."""
    room.start_session(session)
    room.go_to_step(session, step)


def open_page(browsing, persona, path: str) -> Page:
    """The persona's page; any console error on it fails the test (the fixture checks), as a
    script error or a CSP violation does."""
    page = browsing.page_for(persona)
    name = persona.user.get_username()
    page.on(
        "console",
        lambda message: (
            browsing.errors.append(f"{name}: console error: {message.text} at {message.location}")
            if message.type == "error"
            else None
        ),
    )
    page.goto(path)
    return page


def expected_refusal(browsing, status: int) -> None:
    """The browser logs the refusal of a forged request: that one error was expected."""
    refused = [e for e in browsing.errors if f"status of {status}" in e and "/vote/" in e]
    assert len(refused) <= 1, refused
    for error in refused:
        browsing.errors.remove(error)


def open_room(browsing, persona, session: WorkshopSession) -> Page:
    page = open_page(browsing, persona, room_path(session))
    expect(step_heading(page)).to_be_visible()
    following(page)
    return page


def following(page: Page) -> None:
    """The room's event stream is open: this page is among those "In the room"."""
    name = page.evaluate("document.querySelector('.account-name').textContent.trim()")
    expect(page.locator("[data-room-people]")).to_contain_text(name, timeout=5000)


def step_heading(page: Page):
    return page.get_by_role("heading", level=2).and_(page.locator("#step-heading"))


def timer(page: Page):
    return page.get_by_role("region", name="Timer", exact=True)


def results(page: Page):
    return page.get_by_role("region", name="Results", exact=True)


def click_and_confirm(page: Page, button) -> None:
    """A button whose action asks "are you sure?" first: yes."""
    page.once("dialog", lambda dialog: dialog.accept())
    button.click()


def all_follow(facilitator: Page, others: list[Page], button, title: str) -> list[int]:
    """The facilitator clicks; how long (ms) from the click until each other page's step
    heading reads `title` (one clock: the browsers run on this machine)."""
    for page in others:
        expect(step_heading(page)).not_to_have_text(title)
        page.evaluate(WATCH_HEADING, title)
    facilitator.evaluate(CLICK_TIME)
    button.click()
    expect(step_heading(facilitator)).to_have_text(title)
    clicked = facilitator.evaluate("window.__clickedAt")
    seen = [page.evaluate("window.__followed") for page in others]
    assert None not in seen, f"a page never showed {title!r}: {seen}"
    return [moment - clicked for moment in seen]


def shown_seconds(pages: list[Page]) -> list[int]:
    """What each page's timer shows, read one page after the other (well under a second)."""
    shown, began = [], time.monotonic()
    for page in pages:
        text = timer(page).get_by_role("timer").inner_text()
        found = re.search(r"(\d+):(\d\d)", text)
        assert found, text
        shown.append(int(found[1]) * 60 + int(found[2]))
    assert time.monotonic() - began < 0.5, "the timers were not read at about the same moment"
    return shown


def assert_same_time(pages: list[Page]) -> int:
    shown = shown_seconds(pages)
    assert max(shown) - min(shown) <= 1, f"the timers differ: {shown}"
    return min(shown)


def timer_state(pages: list[Page], state: str) -> None:
    for page in pages:
        expect(timer(page)).to_contain_text(state, timeout=LIVE_MS)


def votes_left(page: Page, n: int) -> None:
    expect(page.get_by_text(re.compile(r"^\d+ votes? left$"))).to_have_text(
        f"{n} vote{'s' if n != 1 else ''} left"
    )


def vote_for(page: Page, title: str):
    return page.get_by_role("button", name=f"Vote for {title}", exact=True)


def unvote(page: Page, title: str):
    return page.get_by_role("button", name=f"Remove vote from {title}", exact=True)


def ranking_of(page: Page) -> list[str]:
    rows = results(page).get_by_role("listitem")
    return [" ".join(text.split()) for text in rows.all_inner_texts()]


# --- following the facilitator, one timer --------------------------------------------------------


def test_everyone_follows_the_facilitator_and_sees_the_same_timer(
    browsing, workshop, facilitator, cmo, cio, observer
):
    f = open_room(browsing, facilitator, workshop)
    others = [open_room(browsing, p, workshop) for p in (cmo, cio, observer)]
    everyone = [f, *others]
    o = others[-1]
    for page in others:
        expect(step_heading(page)).to_have_text("Not started")
        expect(page.get_by_role("button", name="Start session")).to_have_count(0)

    steps = list(workshop.steps.order_by("position"))
    lags = all_follow(f, others, f.get_by_role("button", name="Start session"), steps[0].title)
    assert max(lags) <= 1000, f"followed the start after {lags} ms"
    for step in steps[1:3]:
        lags = all_follow(f, others, f.get_by_role("button", name="Next step"), step.title)
        assert max(lags) <= 1000, f"followed {step.title!r} after {lags} ms"
    workshop.refresh_from_db()
    assert workshop.current_step_id == steps[2].pk
    for page in others:
        expect(page.get_by_role("button", name="Next step")).to_have_count(0)
        expect(timer(page).get_by_role("button")).to_have_count(0)  # only the facilitator

    # Idle, every screen shows the step's timebox.
    timebox = steps[2].timebox_minutes * 60
    assert shown_seconds(everyone) == [timebox] * 4

    timer(f).get_by_role("button", name="Start timer").click()
    timer_state(everyone, "running")
    f.wait_for_timeout(1500)  # it counts down, on every screen
    left = assert_same_time(everyone)
    assert timebox - 3 <= left <= timebox - 1, left

    timer(f).get_by_role("button", name="Pause timer").click()
    timer_state(everyone, "paused")
    paused = assert_same_time(everyone)
    f.wait_for_timeout(1200)
    assert shown_seconds(everyone) == [paused] * 4  # paused means still, everywhere
    workshop.refresh_from_db()
    assert workshop.timer_left == paused and workshop.timer_ends_at is None

    timer(f).get_by_role("button", name="Add a minute").click()
    for page in everyone:
        expect(timer(page).get_by_role("timer")).to_contain_text(
            f"{(paused + 60) // 60:02d}:{(paused + 60) % 60:02d}", timeout=LIVE_MS
        )

    timer(f).get_by_role("button", name="Start timer").click()
    timer_state(everyone, "running")
    f.wait_for_timeout(1100)
    left = assert_same_time(everyone)
    assert paused + 60 - 3 <= left <= paused + 60, left
    ends_at = timer(o).get_attribute("data-ends-at")
    timer(f).get_by_role("button", name="Add a minute").click()  # running: on top of what is left
    for page in everyone:
        expect(timer(page)).not_to_have_attribute("data-ends-at", ends_at, timeout=LIVE_MS)
    assert left + 60 - 3 <= assert_same_time(everyone) <= left + 60


# --- private writing, the reveal, dot votes ------------------------------------------------------


def test_private_items_and_votes_stay_hidden_until_the_reveal(
    browsing, workshop, facilitator, cmo, cio, observer
):
    room.start_session(workshop)
    f = open_room(browsing, facilitator, workshop)
    a, b, o = (open_room(browsing, p, workshop) for p in (cmo, cio, observer))
    everyone = [f, a, b, o]
    brainstorm = f.get_by_role("button", name="Go to step Choices for Buy")
    assert max(all_follow(f, [a, b, o], brainstorm, "Choices for Buy")) <= 1000

    # Each member writes an item; the others see how many, never what.
    a.get_by_label("A choice for Buy").fill(SAME_DAY)
    a.get_by_role("button", name="Add", exact=True).click()
    expect(a.get_by_text(SAME_DAY)).to_be_visible()
    for page in (f, b, o):
        expect(page.get_by_text("1 item written by 1 member so far")).to_be_visible(timeout=LIVE_MS)
    b.get_by_label("A choice for Buy").fill(BUNDLE)
    b.get_by_role("button", name="Add", exact=True).click()
    expect(b.get_by_text(BUNDLE)).to_be_visible()
    for page in everyone:
        expect(page.get_by_text("2 items written by 2 members so far")).to_be_visible(
            timeout=LIVE_MS
        )
    for page, hidden in (
        (f, [SAME_DAY, BUNDLE]),
        (a, [BUNDLE]),
        (b, [SAME_DAY]),
        (o, [SAME_DAY, BUNDLE]),
    ):
        for text in hidden:
            expect(page.get_by_text(text)).to_have_count(0)
    expect(o.get_by_label("A choice for Buy")).to_have_count(0)  # observers watch
    assert not StrategicChoice.objects.filter(title__in=[SAME_DAY, BUNDLE]).exists()

    click_and_confirm(f, f.get_by_role("button", name="Reveal"))
    for page in everyone:
        expect(results(page)).to_contain_text(SAME_DAY, timeout=LIVE_MS)
        expect(results(page)).to_contain_text(BUNDLE)
    made = dict(
        StrategicChoice.objects.filter(title__in=[SAME_DAY, BUNDLE]).values_list(
            "title", "owner__user__username"
        )
    )
    assert made == {SAME_DAY: "ana", BUNDLE: "maya"}

    # The vote: 5 dots each, at most 3 on one item; counts hidden until the reveal.
    vote_step = f.get_by_role("button", name="Go to step Vote on the choices")
    assert max(all_follow(f, [a, b, o], vote_step, "Vote on the choices")) <= 1000
    votes_left(a, 5)
    for left in (4, 3, 2):
        vote_for(a, LOYALTY).click()
        votes_left(a, left)
    expect(vote_for(a, LOYALTY)).to_have_count(0)  # three on one item: the cap
    expect(unvote(a, LOYALTY)).to_be_visible()
    for left in (1, 0):
        vote_for(a, REORDER).click()
        votes_left(a, left)
    expect(a.get_by_role("button", name=re.compile("^Vote for "))).to_have_count(0)  # all used
    unvote(a, REORDER).click()
    votes_left(a, 1)
    vote_for(a, SAME_DAY).click()
    votes_left(a, 0)
    # The buttons are not the cap: the server refuses a sixth dot too.
    reorder = StrategicChoice.objects.get(title=REORDER)
    status, text = a.evaluate(
        FORGED_POST, [action_path(workshop, "vote"), {"item": str(reorder.pk)}]
    )
    assert status == 409 and "You have used all 5 of your votes." in text
    expected_refusal(browsing, 409)

    for left in (4, 3):
        vote_for(b, REORDER).click()
        votes_left(b, left)
    vote_for(b, LOYALTY).click()
    votes_left(b, 2)

    # Nobody sees anyone's dots before the reveal, only their own.
    expect(b.get_by_label(f"Your votes on {LOYALTY}: 1", exact=True)).to_be_visible()
    expect(a.get_by_label(f"Your votes on {LOYALTY}: 3", exact=True)).to_be_visible()
    for page in everyone:
        expect(results(page)).to_have_count(0)
        expect(page.get_by_text(re.compile(r"votes? from \d+ member"))).to_have_count(0)

    # The observer watches: no buttons, and a forged vote is refused.
    for name in ("^Vote for ", "^Remove vote from "):
        expect(o.get_by_role("button", name=re.compile(name))).to_have_count(0)
    expect(o.get_by_text(re.compile(r"votes? left"))).to_have_count(0)
    loyalty = StrategicChoice.objects.get(title=LOYALTY)
    status, _ = o.evaluate(FORGED_POST, [action_path(workshop, "vote"), {"item": str(loyalty.pk)}])
    assert status == 403
    expected_refusal(browsing, 403)
    assert not SessionVote.objects.filter(voter=observer.user).exists()
    assert sum(SessionVote.objects.filter(voter=cmo.user).values_list("count", flat=True)) == 5

    f.get_by_role("button", name="Reveal").click()
    expected = [
        f"1 {LOYALTY} 4 votes from 2 members",
        f"2 {REORDER} 3 votes from 2 members",
        f"3 {SAME_DAY} 1 vote from 1 member",
    ]
    for page in everyone:
        expect(results(page)).to_be_visible(timeout=LIVE_MS)
        assert ranking_of(page) == expected
        expect(page.get_by_role("button", name=re.compile("^Vote for "))).to_have_count(0)


# --- the keyboard alone: the map and the vote ---------------------------------------------------


def test_a_keyboard_only_member_places_an_assumption_and_votes(
    browsing, workshop, facilitator, cmo
):
    run_at(workshop, step_of(workshop, StepKind.MAP))
    f = open_room(browsing, facilitator, workshop)
    a = open_room(browsing, cmo, workshop)
    assumption = Assumption.objects.get(statement=REPEAT)

    def chip(page: Page):
        return page.get_by_role("button", name=re.compile("^" + re.escape(REPEAT) + ":"))

    def tab_to(target, limit: int = 80) -> None:
        for _ in range(limit):
            a.keyboard.press("Tab")
            if target.evaluate("el => el === document.activeElement"):
                return
        raise AssertionError("Tab never reached it")

    expect(chip(a)).to_have_accessible_name(f"{REPEAT}: importance 3, evidence 1")
    tab_to(chip(a))
    a.keyboard.press("ArrowUp")  # more important
    expect(chip(a)).to_have_accessible_name(f"{REPEAT}: importance 4, evidence 1, proposed")
    expect(chip(a)).to_be_focused()  # focus stays on it as it moves
    a.keyboard.press("ArrowRight")  # more evidence
    expect(chip(a)).to_have_accessible_name(f"{REPEAT}: importance 4, evidence 2, proposed")
    expect(chip(a)).to_be_focused()
    # Keys pressed faster than the map is re-drawn add up.
    for key in ("ArrowRight", "ArrowRight", "ArrowDown"):
        a.keyboard.press(key)
    expect(chip(a)).to_have_accessible_name(f"{REPEAT}: importance 3, evidence 4, proposed")
    expect(chip(a)).to_be_focused()
    cell = a.locator("td.map-cell", has=chip(a))
    expect(cell).to_have_attribute("data-importance", "3")
    expect(cell).to_have_attribute("data-evidence", "4")
    placed = MapPlacement.objects.get(assumption=assumption)
    assert (placed.importance, placed.evidence, placed.moved_by_id) == (3, 4, cmo.user.pk)
    assert placed.settled_at is None

    # The facilitator sees the proposal and settles it: the plan has it.
    expect(chip(f)).to_have_accessible_name(
        f"{REPEAT}: importance 3, evidence 4, proposed", timeout=LIVE_MS
    )
    f.get_by_role("button", name=f"Settle {REPEAT}").click()
    expect(chip(a)).to_have_accessible_name(f"{REPEAT}: importance 3, evidence 4", timeout=LIVE_MS)
    assumption.refresh_from_db()
    assert (assumption.importance, assumption.evidence) == (3, 4)

    # On to the vote; the member votes with Enter, then Space.
    f.get_by_role("button", name="Next step").click()
    expect(step_heading(a)).to_have_text("Vote on the choices", timeout=LIVE_MS)
    votes_left(a, 5)
    tab_to(vote_for(a, LOYALTY))
    a.keyboard.press("Enter")
    votes_left(a, 4)
    expect(vote_for(a, LOYALTY)).to_be_focused()
    a.keyboard.press("Space")
    votes_left(a, 3)
    expect(a.get_by_label(f"Your votes on {LOYALTY}: 2", exact=True)).to_be_visible()
    loyalty = StrategicChoice.objects.get(title=LOYALTY)
    vote = SessionVote.objects.get(voter=cmo.user)
    assert (vote.item_id, vote.count) == (loyalty.pk, 2)


# --- present mode ---------------------------------------------------------------------------------


def test_present_mode_shows_the_step_and_the_timer_large(browsing, workshop, facilitator):
    run_at(workshop, step_of(workshop, StepKind.BRAINSTORM, "Choices for Buy"))
    f = open_room(browsing, facilitator, workshop)
    f.set_viewport_size({"width": 1280, "height": 720})
    title = step_heading(f)
    clock = timer(f).get_by_role("timer")

    def px(locator) -> float:
        return float(locator.evaluate("el => getComputedStyle(el).fontSize").removesuffix("px"))

    normal = px(title), px(clock)
    f.keyboard.press("p")
    expect(f.locator("body")).to_have_class(re.compile(r"\bpresenting\b"))
    expect(f.get_by_role("button", name="Present")).to_have_attribute("aria-pressed", "true")
    assert px(title) >= 1.5 * normal[0] and px(title) >= 36, (normal, px(title))
    assert px(clock) >= 2 * normal[1] and px(clock) >= 64, (normal, px(clock))
    expect(f.get_by_role("region", name="Agenda")).to_be_hidden()
    for element in (title, clock):
        expect(element).to_be_in_viewport(ratio=1)

    # Typing an idea does not switch modes; Escape leaves.
    f.keyboard.press("Escape")
    expect(f.locator("body")).not_to_have_class(re.compile(r"\bpresenting\b"))
    idea = f.get_by_label("A choice for Buy")
    idea.fill("")
    idea.press_sequentially("pop-up shops")
    expect(f.locator("body")).not_to_have_class(re.compile(r"\bpresenting\b"))
    expect(idea).to_have_value("pop-up shops")
    assert (px(title), px(clock)) == normal

    # It survives the room moving on (the page is re-drawn, the mode stays).
    f.get_by_role("button", name="Present").click()
    expect(f.locator("body")).to_have_class(re.compile(r"\bpresenting\b"))
    f.get_by_role("button", name="Next step").click()
    expect(title).not_to_have_text("Choices for Buy")
    expect(f.locator("body")).to_have_class(re.compile(r"\bpresenting\b"))
    f.keyboard.press("p")
    expect(f.locator("body")).not_to_have_class(re.compile(r"\bpresenting\b"))


# --- back to the room ------------------------------------------------------------------------------


def test_a_member_on_the_board_has_one_click_back_to_the_room(browsing, workshop, facilitator, cmo):
    board = open_page(browsing, cmo, board_url(workshop.plan))
    back = board.get_by_role("link", name="Back to the room")
    live(board, 1)
    expect(back).to_be_hidden()

    f = open_room(browsing, facilitator, workshop)
    f.get_by_role("button", name="Start session").click()
    expect(back).to_be_visible(timeout=LIVE_MS)
    back.click()
    expect(board).to_have_url(re.compile(re.escape(room_path(workshop)) + "$"))
    first = workshop.steps.order_by("position").first()
    expect(step_heading(board)).to_have_text(first.title)
    following(board)

    # Opened while the session runs, a plan page has the link from the start.
    workshop.refresh_from_db()
    assert workshop.status == "running"
    other = open_page(browsing, cmo, board_url(workshop.plan))
    expect(other.get_by_role("link", name="Back to the room")).to_be_visible()
    # The room itself does not offer it.
    expect(f.get_by_role("link", name="Back to the room")).to_be_hidden()
