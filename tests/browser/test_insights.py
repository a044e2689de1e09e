"""Assumptions against customer data, in the browser: a test's live preview, "Re-test now" through
a real Celery worker, the history chart under the strict CSP, and an import from upload to result."""

from __future__ import annotations

import io
from csv import reader as csv_rows

import pytest
from playwright.sync_api import Page, expect

from insights.models import Event, Import
from planning.models import Assumption
from tests.insights.retest_data import seed_plan

from .pages import LIVE_MS, board_url, card, column, edit_button, live, save

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

REVENUE = "Purchases bring in at least 300"  # purchases total 500 in the seeded data
WORKER_MS = 30_000  # a job queued for a worker that may still be starting


def no_csp_violation(page: Page) -> None:
    assert page.evaluate("window.__cspViolations") == []


def test_a_test_is_previewed_re_tested_and_charted(browsing, worker, plan, cmo, cio):
    seed_plan(plan)
    revenue = Assumption.objects.get(statement=REVENUE)
    a = browsing.page_for(cmo, board_url(plan))
    b = browsing.page_for(cio, board_url(plan))
    live(a, 2)
    live(b, 2)

    # While A edits the threshold, the form says what the test would say on today's data.
    edit_button(card(column(a, "Buy"), REVENUE)).click()
    form = a.get_by_role("article", name="Edit assumption")
    preview = form.get_by_role("status")
    expect(preview).to_contain_text("500.00 · target ≥ 300.00 → it would be Holds")
    expect(preview.locator("[data-preview-status]")).to_have_attribute(
        "data-preview-status", "holds"
    )
    form.get_by_label("Threshold", exact=True).fill("600")
    expect(preview).to_contain_text("500.00 · target ≥ 600.00 → it would be Broken")
    expect(preview.locator("[data-preview-status]")).to_have_attribute(
        "data-preview-status", "broken"
    )
    save(a, form)
    b_revenue = card(column(b, "Buy"), REVENUE)
    expect(b_revenue).to_contain_text("target ≥ 600.00", timeout=LIVE_MS)
    expect(b_revenue.get_by_text("Untested", exact=True)).to_be_visible()

    # "Re-test now" runs on the worker; the page waits for the verdict, B's board updates.
    card(column(a, "Buy"), REVENUE).get_by_role("link", name=REVENUE).click()
    expect(a.get_by_role("heading", name=REVENUE)).to_be_visible()
    expect(a.locator("#verdict [data-status]")).to_have_text("Untested")
    worker.start_worker()
    a.get_by_role("button", name="Re-test now").click()
    expect(a.locator("#verdict [data-status]")).to_have_text("Broken", timeout=WORKER_MS)
    expect(a.locator("#verdict")).to_contain_text("500.00")
    expect(b_revenue.get_by_text("Broken", exact=True)).to_be_visible(timeout=5000)
    expect(b_revenue).to_contain_text("500.00")
    revenue.refresh_from_db()
    assert (revenue.threshold, revenue.status, revenue.observed) == (600, "broken", 500)

    # The history chart, drawn by the static script from the page's JSON, against data time:
    # the end of January, of February, and as_of (1 March), with the run marked where its data
    # ended. It came with the verdict, no reload needed.
    chart = a.locator("[data-chart=history-figure]")
    expect(chart).to_have_class("chart js-plotly-plot")
    expect(chart.locator("svg.main-svg").first).to_be_visible()
    expect(chart.locator(".scatterlayer .trace .points path")).to_have_count(3 + 1)
    ticks = " ".join(chart.locator(".xaxislayer-above .xtick text").all_text_contents())
    assert "Feb" in ticks and "Dec" not in ticks, ticks  # data time, not today (December)
    expect(a.locator("figcaption")).to_contain_text(
        "3 points of data time from 31 Jan 2026 to 1 Mar 2026: 500.00 at first, 500.00 with "
        "the latest data (broken), against a target ≥ 600.00."
    )
    expect(a.get_by_role("row").filter(has_text="Broken")).to_have_count(1)
    no_csp_violation(a)
    no_csp_violation(b)


def test_an_import_with_a_renamed_column_and_a_bad_date(browsing, worker, plan, cmo):
    a = browsing.page_for(cmo, f"/plans/{plan.slug}/data/")
    csv = (
        "client,occurred_at,event_type,value\n"
        "k1,2026-03-01,purchase,10\n"
        "k2,2026-03-02,purchase,12.50\n"
        "k3,2026-02-30,purchase,8\n"  # line 4: there is no 30 February
        "k1,2026-03-05,visit,\n"
        "k4,2026-03-06T10:00:00+01:00,signup,\n"
    )
    a.get_by_label("Events file").set_input_files(
        files=[{"name": "crm-export.csv", "mimeType": "text/csv", "buffer": csv.encode()}]
    )
    a.get_by_role("button", name="Upload and check").click()

    check = a.get_by_role("region", name="Check the columns")
    expect(check.get_by_role("cell", name="2026-02-30")).to_be_visible()  # the file's first rows
    expect(check.get_by_label("occurred_at")).to_have_value("occurred_at")  # recognised
    check.get_by_label("client").select_option(label="Customer id (required)")
    check.get_by_label("Import the valid rows and let me download the rejected ones").check()
    check.get_by_role("button", name="Start import").click()

    # Queued: the page shows the progress while the worker starts and works.
    status = a.locator("#import-status")
    expect(status.get_by_role("heading", name="Importing…")).to_be_visible()
    expect(status.get_by_role("progressbar", name="Import progress")).to_be_visible()
    worker.start_worker()
    expect(status.get_by_role("heading", name="Imported", exact=True)).to_be_visible(
        timeout=WORKER_MS
    )
    figures = {
        term: status.get_by_role("term").filter(has_text=term).locator("+ dd").inner_text()
        for term in ("Rows read", "Imported", "Rejected")
    }
    assert figures == {"Rows read": "5", "Imported": "4", "Rejected": "1"}
    errors = status.get_by_role("table")
    row = errors.get_by_role("row").filter(has_text="2026-02-30")
    expect(row.get_by_role("cell")).to_have_text(
        [
            "4",
            "occurred_at",
            "2026-02-30",
            "is not a date; use ISO 8601 such as 2026-03-01 or 2026-03-01T14:05:00+01:00",
        ]
    )
    with a.expect_download() as download:
        status.get_by_role("link", name="Download the rejected rows (CSV)").click()
    rows = list(csv_rows(io.StringIO(download.value.path().read_text())))
    assert rows[1][2:] == ["k3", "2026-02-30", "purchase", "8"]  # every cell quoted

    record = Import.objects.get()
    assert (record.status, record.rows_imported, record.rows_rejected) == ("succeeded", 4, 1)
    assert record.mapping["client"] == "customer_id"
    assert sorted(Event.objects.values_list("customer_id", flat=True)) == ["k1", "k1", "k2", "k4"]
