"""What a person finds on the pages, by role and label, and what they do there."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

# Live updates must reach the other board within this (ms) once a save has completed.
LIVE_MS = 1000
# Debian's chromium, as the browser tests and `make bench board` launch it (never downloaded).
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def board_url(plan) -> str:
    return f"/plans/{plan.slug}/"


def column(page: Page, name: str):
    return page.get_by_role("region", name=name, exact=True)


def card(scope, name: str):
    """A choice or an assumption on the board: articles are labelled by title or statement."""
    return scope.get_by_role("article", name=name, exact=True)


def edit_button(item):
    """The item's own Edit button (a choice's card also holds its assumptions' buttons)."""
    return item.locator(":scope > .tools").get_by_role("button", name=re.compile(r"^Edit\b"))


def live(page: Page, people: int) -> None:
    """The board's event stream is open: presence lists everyone who has the plan open."""
    said = "1 person has" if people == 1 else f"{people} people have"
    expect(page.locator("#presence")).to_have_attribute("aria-label", f"{said} this plan open")


def never_reloaded(page: Page) -> None:
    page.evaluate("window.__sameDocument = true")


def assert_not_reloaded(page: Page) -> None:
    assert page.evaluate("window.__sameDocument === true"), "the page was reloaded"


def is_save(response) -> bool:
    return response.request.method == "POST" and response.url.endswith(("/edit/", "/new/"))


def save(page: Page, form) -> None:
    """Click Save and wait until the save has come back: done, as far as this person knows."""
    with page.expect_response(is_save) as response:
        form.get_by_role("button", name="Save").click()
    assert response.value.status == 200, response.value.text()
