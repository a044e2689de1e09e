"""Every page passes axe-core with no violation, on a plan that has something on every page; and
the main pages never scroll sideways on a 390 px phone.

axe-core is vendored under tests/browser/vendor/axe-core (never a CDN) and injected through
Playwright's `evaluate`, which the page's Content-Security-Policy does not apply to: the pages are
checked under the same strict policy they run under in production.
"""

from __future__ import annotations

import datetime as dt
import io
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from insights.models import Import
from insights.services.history import compute_history
from insights.services.imports import create_import, run_import
from insights.services.retests import run_plan_retest, start_plan_retest
from insights.services.uploads import upload_import
from lifecycle.models import EventMapping
from planning.models import Membership, Plan, Role
from planning.services import create_item, create_plan
from planning.services.people import add_comment
from planning.sessions import room
from planning.sessions.agenda import create_session
from tests.insights.events import store
from tests.insights.retest_data import seed_plan, set_previous_statuses
from tests.insights.test_metrics import generate

from .conftest import CSP_RECORDER, Browsing
from .pages import card, column, edit_button, live

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

AXE = (Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js").read_text()

LOYALTY = "Launch a loyalty subscription"  # in Buy and Engage (seed_plan)
ONBOARDING = "Onboard every new customer in a week"
# The running workshop's steps, from its template: a review, a brainstorm, the map, a vote...
ROOM_STEPS = [
    "Review customers by stage",
    "Choices for Buy",
    "Surface the assumptions",
    "Map the assumptions",
    "Vote on the choices",
    "Decide",
    "Wrap up",
]

# Rows 3 and 5 are rejected: a day that does not exist, a value that is not a number.
IMPORT_CSV = (
    "client,occurred_at,event_type,value\n"
    "k1,2026-03-01,purchase,10\n"
    "k2,2026-02-30,purchase,12.50\n"
    "k3,2026-03-02,visit,\n"
    "k4,2026-03-03,purchase,lots\n"
)


@dataclass
class Site:
    """The plan with something on every page, and the paths of those pages."""

    plan: Plan
    paths: dict[str, str]


@pytest.fixture
def site(plan, cmo, cio, facilitator, observer, staff) -> Site:
    seeded = seed_plan(plan)  # choices in Explore, Buy and Engage; three tested assumptions
    store(plan, generate())  # 320 customers over a year: full cohort and funnel tables
    stages = {stage.name: stage for stage in plan.stages.all()}
    EventMapping.objects.bulk_create(
        EventMapping(plan=plan, event_type=kind, stage=stages[stage])
        for kind, stage in [("visit", "Explore"), ("purchase", "Buy")]
    )
    onboarding = create_item(
        "choice",
        plan,
        cio.user,
        {
            "title": ONBOARDING,
            "stages": [stages["Use"].pk, stages["Ask"].pk],
            "owner": cio.membership.pk,
            "business_unit": "Retail",
            "rationale": "Customers who are set up in their first week stay twice as long.",
        },
    )
    create_item(
        "assumption",
        plan,
        cio.user,
        {"statement": "Most customers finish onboarding alone", "importance": 4, "evidence": 2},
        choice_id=onboarding.pk,
    )
    create_item(
        "initiative",
        plan,
        cmo.user,
        {"title": "Self-service onboarding portal", "stages": [stages["Use"].pk]},
    )
    add_comment(plan, cio.user, seeded.loyalty, "Which perks do members ask for most?")
    add_comment(plan, cmo.user, seeded.repeat, "The January cohort is small.")
    # A re-test that changes two verdicts (Holds → Broken, Untested → Holds), and a history.
    set_previous_statuses(seeded)
    retest = start_plan_retest(plan, user=cmo.user)
    run_plan_retest(retest.pk)
    compute_history(seeded.repeat, plan=plan)
    other = create_plan("Retail growth 2027", "retail-2027")
    Membership.objects.create(
        plan=other, user=cmo.user, role=Role.BU_LEADER, business_unit="Retail"
    )

    record = create_import(
        plan,
        io.BytesIO(IMPORT_CSV.encode()),
        "crm-export.csv",
        user=cmo.user,
        mode=Import.Mode.SKIP_INVALID,
        mapping={"client": "customer_id"},
    )
    run_import(record.pk)
    record.refresh_from_db()
    assert (record.status, record.rows_rejected) == ("succeeded", 2), record.message
    draft = upload_import(plan, io.BytesIO(IMPORT_CSV.encode()), "march.csv", user=cmo.user)

    # A workshop that ended (its summary) and one running now (its room).
    ended = create_session(
        plan, facilitator.user, title="January review", date=dt.date(2026, 1, 15), template="review"
    )
    room.start_session(ended)
    room.end_session(ended)
    workshop = create_session(
        plan,
        facilitator.user,
        title="Spring planning workshop",
        date=dt.date(2026, 3, 2),
        template="workshop",
    )
    room.start_session(workshop)

    base = f"/plans/{plan.slug}"
    return Site(
        plan=plan,
        paths={
            "plan list": "/plans/",
            "new plan": "/plans/new/",
            "board": f"{base}/",
            "board, as the facilitator": f"{base}/",
            "choice": f"{base}/choices/{seeded.loyalty.pk}/",
            "customers": f"{base}/customers/",
            "assumption map": f"{base}/assumption-map/",
            "assumption": f"{base}/assumptions/{seeded.repeat.pk}/history/",
            "re-test": f"{base}/retests/{retest.pk}/",
            "imports": f"{base}/data/",
            "import to check": f"{base}/data/{draft.pk}/",
            "import with errors": f"{base}/data/{record.pk}/",
            "event map": f"{base}/event-map/",
            "data source": f"{base}/data-source/",
            "members": f"{base}/members/",
            "members, as the facilitator": f"{base}/members/",
            "activity": f"{base}/activity/",
            "settings": f"{base}/settings/",
            "workshops": f"{base}/sessions/",
            "workshop room": f"{base}/sessions/{workshop.pk}/",
            "workshop summary": f"{base}/sessions/{ended.pk}/summary/",
            "sign-in": "/accounts/login/",
            "password reset": "/accounts/password_reset/",
            "admin": "/admin/",
            "admin changelist": "/admin/planning/plan/",
        },
    )


# Who looks at each page: a CMO (who edits), the facilitator (who also manages stages and
# members), nobody signed in on the account pages, a staff member in the back-office. The room has
# a test of its own, for the facilitator and a member.
VISITORS = {
    "board, as the facilitator": "facilitator",
    "members, as the facilitator": "facilitator",
    "sign-in": None,
    "password reset": None,
    "admin": "staff",
    "admin changelist": "staff",
}
PAGES = [
    "plan list",
    "new plan",
    "board",
    "board, as the facilitator",
    "choice",
    "customers",
    "assumption map",
    "assumption",
    "re-test",
    "imports",
    "import to check",
    "import with errors",
    "event map",
    "data source",
    "members",
    "members, as the facilitator",
    "activity",
    "settings",
    "workshops",
    "workshop summary",
    "sign-in",
    "password reset",
    "admin",
    "admin changelist",
]


def anonymous_page(browsing: Browsing) -> Page:
    """A page of a fresh context without a session cookie, watched like `page_for`'s."""
    context = browsing.browser.new_context(
        base_url=browsing.app.url, viewport={"width": 1400, "height": 1000}
    )
    context.set_default_timeout(10_000)
    context.add_init_script(CSP_RECORDER)
    browsing.contexts.append(context)
    page = context.new_page()
    page.on("pageerror", lambda error: browsing.errors.append(f"anonymous: {error}"))
    return page


def open_page(request, browsing: Browsing, site: Site, name: str, viewport=None) -> Page:
    visitor = VISITORS.get(name, "cmo")
    if visitor is None:
        page = anonymous_page(browsing)
    else:
        page = browsing.page_for(request.getfixturevalue(visitor))
    if viewport:
        page.set_viewport_size(viewport)
    response = page.goto(site.paths[name])
    assert response is not None and response.status == 200, (name, site.paths[name])
    settled(page)
    return page


def settled(page: Page) -> None:
    """What scripts draw has been drawn: the charts, the board's presence list."""
    charts = page.locator("[data-chart]")
    for i in range(charts.count()):
        expect(charts.nth(i).locator("svg.main-svg").first).to_be_visible()
    if page.locator("#presence").count():
        expect(page.locator("#presence")).to_have_attribute("aria-label", re.compile(r"open$"))


def axe_violations(page: Page) -> list[dict]:
    """axe-core's violations on the page as it is now, with every rule axe runs by default."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE + "\n;true")
    return page.evaluate(
        """async () => {
            const results = await axe.run(document, {resultTypes: ["violations"]});
            return results.violations.map(v => ({
                id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.map(n => ({target: n.target, html: n.html, summary: n.failureSummary})),
            }));
        }"""
    )


def describe(violations: list[dict]) -> str:
    lines = []
    for v in violations:
        lines.append(f"  {v['id']} ({v['impact']}, {len(v['nodes'])}×): {v['help']}")
        for node in v["nodes"][:5]:
            lines.append(f"    {' '.join(map(str, node['target']))}")
            lines.append(f"      {node['html'][:200]}")
            lines.append("      " + (node["summary"] or "").replace("\n", "\n      ")[:400])
        if len(v["nodes"]) > 5:
            lines.append(f"    … and {len(v['nodes']) - 5} more")
    return "\n".join(lines)


@pytest.mark.parametrize("name", PAGES)
def test_the_page_has_no_accessibility_violation(request, browsing, site, name):
    page = open_page(request, browsing, site, name)
    violations = axe_violations(page)
    assert violations == [], f"axe-core on {name} ({site.paths[name]}):\n" + describe(violations)


def test_the_board_has_no_violation_with_a_form_and_comments_open(request, browsing, site):
    page = open_page(request, browsing, site, "board")
    live(page, 1)  # "1 person has this plan open"
    # Each button names its item, after the words it shows.
    loyalty = card(column(page, "Buy"), LOYALTY)
    for name in (f"Edit {LOYALTY}", f"Delete {LOYALTY}", f"Add assumption to {LOYALTY}"):
        expect(loyalty.get_by_role("button", name=name, exact=True)).to_have_count(1)
    expect(column(page, "Buy").get_by_role("button", name="Add choice to Buy")).to_have_count(1)
    expect(loyalty.get_by_role("button", name=f"1 comment on {LOYALTY}")).to_have_text("1 comment")

    edit_button(loyalty).click()
    expect(page.get_by_role("article", name="Edit strategic choice")).to_be_visible()
    onboarding = card(column(page, "Use"), ONBOARDING)
    onboarding.get_by_role("button", name=f"0 comments on {ONBOARDING}").click()
    comments = page.get_by_role("article", name=f"Comments on {ONBOARDING}")
    comments.get_by_label("Your comment").press_sequentially("Can @fr")  # suggests Fran
    expect(comments.get_by_role("listbox")).to_be_visible()
    violations = axe_violations(page)
    assert violations == [], "axe-core on the board being edited:\n" + describe(violations)


def test_every_step_of_the_room_has_no_violation(browsing, site, facilitator, cmo):
    """The running room as the facilitator and a member see it, step by step as the facilitator
    moves it on, with something written and a vote given."""
    path = site.paths["workshop room"]
    pages = {
        "facilitator": browsing.page_for(facilitator, path),
        "a member": browsing.page_for(cmo, path),
    }
    member = pages["a member"]
    found = {}
    for title in ROOM_STEPS:
        if title != ROOM_STEPS[0]:
            pages["facilitator"].get_by_role("button", name=f"Go to step {title}").click()
        for page in pages.values():
            expect(page.locator("#step-heading")).to_have_text(title, timeout=5000)
        if title == "Choices for Buy":
            member.get_by_label("A choice for Buy").fill("Offer same-day delivery")
            member.get_by_role("button", name="Add", exact=True).click()
            expect(member.get_by_text("Offer same-day delivery")).to_be_visible()
        if title == "Vote on the choices":
            member.get_by_role("button", name=f"Vote for {LOYALTY}", exact=True).click()
            expect(
                member.get_by_role("button", name=f"Remove vote from {LOYALTY}", exact=True)
            ).to_be_visible()
        for who, page in pages.items():
            violations = axe_violations(page)
            if violations:
                found[f"{title}, as {who}"] = describe(violations)
    assert found == {}, "axe-core in the room:\n" + "\n".join(
        f"{step}:\n{text}" for step, text in found.items()
    )


PHONE = {"width": 390, "height": 844}
MAIN_PAGES = [
    "board",
    "plan list",
    "customers",
    "assumption map",
    "imports",
    "import with errors",
    "event map",
    "data source",
    "members",
    "activity",
    "workshops",
    "workshop room",
    "settings",
]

# The elements that stick out on the right of the screen, to name them when a page is too wide.
WIDER_THAN_THE_SCREEN = """() => [...document.querySelectorAll("body *")]
    .filter(e => e.getBoundingClientRect().right > window.innerWidth + 0.5)
    .slice(0, 8)
    .map(e => e.tagName.toLowerCase() + (e.id ? "#" + e.id : "")
              + (typeof e.className === "string" && e.className.trim()
                 ? "." + e.className.trim().split(/\\s+/).join(".") : "")
              + " right=" + Math.round(e.getBoundingClientRect().right))"""


def test_the_main_pages_never_scroll_sideways_on_a_phone(request, browsing, site):
    wide = {}
    for name in MAIN_PAGES:
        page = open_page(request, browsing, site, name, viewport=PHONE)
        scroll_width, screen = page.evaluate(
            "[document.documentElement.scrollWidth, window.innerWidth]"
        )
        assert screen == PHONE["width"]
        if scroll_width > screen:
            wide[name] = (scroll_width, page.evaluate(WIDER_THAN_THE_SCREEN))
        page.context.close()
    assert wide == {}, f"pages wider than the {PHONE['width']} px screen: {wide}"
