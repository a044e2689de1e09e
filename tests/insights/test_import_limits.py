"""What an events file may be (issue 9, finding 3): the column check runs in the web request, so
it reads a bounded start of the file and answers at once whatever the file; the import reads a
bounded line, row and width, and refuses the same files with the same words."""

from __future__ import annotations

import io
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from insights.forms import MappingForm
from insights.models import Event, Import
from insights.services.imports import FileRejected, create_import, run_import
from insights.services.uploads import check_draft

pytestmark = pytest.mark.django_db

MIB = 1024**2
NO_LINE_BREAK = "The first line is longer than 1 MiB: is this a CSV file?"
# What a web request may take, in time and in memory, whatever the file.
FAST_SECONDS = 1.0
SMALL_PEAK = 50 * MIB


def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    """(what `call` returned, the seconds it took)."""
    started = time.perf_counter()
    result = call()
    return result, time.perf_counter() - started


def measured(call: Callable[[], Any]) -> tuple[Any, int]:
    """(what `call` returned, the peak of the memory Python allocated meanwhile). Tracing slows
    Python down several times: time is taken apart, with `timed`."""
    tracemalloc.start()
    try:
        result = call()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return result, peak


def upload(persona, plan, content: bytes, name: str = "events.csv"):
    return persona.client.post(
        reverse("insights:imports", args=[plan.slug]),
        {"file": SimpleUploadedFile(name, content, content_type="text/csv")},
    )


def detail(persona, record: Import):
    return persona.client.get(reverse("insights:import_detail", args=[record.plan.slug, record.pk]))


def wide(columns: int, rows: int = 2) -> bytes:
    """A valid events file: the three required columns, then attributes up to `columns`."""
    names = ["customer_id", "occurred_at", "event_type"] + [f"a{i}" for i in range(3, columns)]
    lines = [",".join(names)]
    lines += [
        ",".join([f"c{r}", "2026-03-01", "visit"] + ["x"] * (columns - 3)) for r in range(rows)
    ]
    return ("\n".join(lines) + "\n").encode()


def write_file(path: Path, parts: list[tuple[bytes, int]]) -> Path:
    """A file of (bytes, times) parts, written a block at a time: large files cost no memory."""
    with open(path, "wb") as out:
        for data, times in parts:
            block = data * max(1, MIB // len(data))
            whole, rest = divmod(times, MIB // len(data) or 1)
            for _ in range(whole):
                out.write(block)
            out.write(data * rest)
    return path


# ---------------------------------------------------------------------------------------------
# The column check, in the web request


def test_a_200_mb_file_with_no_line_break_is_refused_at_once_and_kept(plan, cmo, tmp_path):
    big = write_file(tmp_path / "big.csv", [(b"a", 200 * MIB)])
    with open(big, "rb") as stream:  # what the upload view does with the file Django received
        record = create_import(plan, stream, "big.csv", user=cmo.user, draft=True)
    big.unlink()

    response, seconds = timed(lambda: detail(cmo, record))

    assert response.status_code == 200
    assert NO_LINE_BREAK in response.content.decode()
    assert seconds < FAST_SECONDS, f"{seconds:.2f} s"
    # The same page again, its memory traced this time.
    response, peak = measured(lambda: detail(cmo, record))
    assert NO_LINE_BREAK in response.content.decode()
    assert peak < SMALL_PEAK, f"{peak / MIB:.0f} MiB"
    # The page only says so (a GET writes nothing); the upload's own check rejects it, as fast.
    record.refresh_from_db()
    assert record.status == "draft"
    _, seconds = timed(lambda: check_draft(record))
    assert seconds < FAST_SECONDS, f"{seconds:.2f} s"
    record.refresh_from_db()
    assert (record.status, record.message) == ("rejected", NO_LINE_BREAK)
    # Kept, as every upload is (DOMAIN §4), and nothing else made.
    assert record.file.size == record.size_bytes == 200 * MIB
    assert Import.objects.count() == 1
    assert Event.objects.count() == 0
    record.file.delete(save=False)  # 200 MB less on the disk


def test_a_file_with_no_line_break_uploaded_and_started_through_the_views(plan, cmo):
    content = b"x" * (3 * MIB)
    response = upload(cmo, plan, content)
    assert response.status_code == 302
    record = Import.objects.get()
    page = cmo.client.get(response.headers["Location"]).content.decode()
    assert NO_LINE_BREAK in page
    assert "<select" not in page
    # Starting it anyway (a second tab, a stale form) answers with the page, not an error.
    started = cmo.client.post(
        reverse("insights:import_start", args=[plan.slug, record.pk]), {"mode": "skip_invalid"}
    )
    assert started.status_code == 302
    record.refresh_from_db()
    assert (record.status, record.message) == ("rejected", NO_LINE_BREAK)
    with record.file.open("rb") as kept:
        assert kept.read() == content
    assert Event.objects.count() == 0


def test_a_draft_whose_file_became_unreadable_is_rejected_on_start(plan, cmo, settings):
    upload(cmo, plan, wide(20))
    record = Import.objects.get()
    settings.IMPORT_MAX_COLUMNS = 10
    response = cmo.client.post(
        reverse("insights:import_start", args=[plan.slug, record.pk]),
        {
            "column_0": "customer_id",
            "column_1": "occurred_at",
            "column_2": "event_type",
            "mode": "all_or_nothing",
        },
    )
    assert response.status_code == 302
    record.refresh_from_db()
    assert (record.status, record.message) == (
        "rejected",
        "This file has 20 columns; at most 10 are supported.",
    )


def test_a_header_of_100k_columns_is_refused_in_under_a_second(plan, cmo):
    content = wide(100_000)
    _, seconds = timed(lambda: upload(cmo, plan, content))
    record = Import.objects.get()
    assert seconds < FAST_SECONDS, f"{seconds:.2f} s"
    assert record.status == "rejected"  # by the upload itself

    response, seconds = timed(lambda: detail(cmo, record))

    page = response.content.decode()
    assert "This file has 100,000 columns; at most 500 are supported." in page
    assert "<select" not in page
    assert seconds < FAST_SECONDS, f"{seconds:.2f} s"
    # A draft's page reads the header again, quickly and in little memory, and saves nothing.
    Import.objects.filter(pk=record.pk).update(status=Import.Status.DRAFT)
    response, seconds = timed(lambda: detail(cmo, record))
    assert "This file has 100,000 columns; at most 500 are supported." in response.text
    assert "<select" not in response.text
    assert seconds < FAST_SECONDS, f"{seconds:.2f} s"
    _, peak = measured(lambda: detail(cmo, record))
    assert peak < SMALL_PEAK, f"{peak / MIB:.0f} MiB"
    record.refresh_from_db()
    assert record.status == "draft"
    assert record.file.size == record.size_bytes


def test_a_header_at_the_cap_is_mapped_and_imported(
    plan, cmo, tasks_inline, django_capture_on_commit_callbacks
):
    upload(cmo, plan, wide(500))
    record = Import.objects.get()

    response, seconds = timed(lambda: detail(cmo, record))

    page = response.content.decode()
    assert "500 columns" in page
    assert page.count("<select") == 500
    assert seconds < FAST_SECONDS, f"{seconds:.2f} s"
    fields = {"column_0": "customer_id", "column_1": "occurred_at", "column_2": "event_type"}
    with django_capture_on_commit_callbacks(execute=True):
        cmo.client.post(
            reverse("insights:import_start", args=[plan.slug, record.pk]),
            {**fields, "mode": "all_or_nothing"},
        )
    record.refresh_from_db()
    assert (record.status, record.rows_imported) == ("succeeded", 2)
    assert len(Event.objects.first().attributes) == 497


def test_one_column_over_the_cap_is_refused_with_both_numbers(plan, cmo):
    upload(cmo, plan, wide(501))
    record = Import.objects.get()
    page = detail(cmo, record).content.decode()
    assert "This file has 501 columns; at most 500 are supported." in page
    assert "<select" not in page
    # Not a dead end: the way to try again with a corrected file.
    assert f'<a href="/plans/{plan.slug}/data/">upload it again</a>' in page


def test_a_row_of_a_million_values_under_a_narrow_header_is_shown_at_once(plan, cmo):
    content = wide(3, rows=1) + b"c1,2026-03-01,visit" + b"," * (MIB - 100) + b"\n"
    upload(cmo, plan, content)
    record = Import.objects.get()

    response, seconds = timed(lambda: detail(cmo, record))

    page = response.content.decode()
    assert seconds < FAST_SECONDS, f"{seconds:.2f} s"
    # The preview shows what fits under the header; the import tells what is wrong with it.
    assert "<tr><td>c1</td><td>2026-03-01</td><td>visit</td></tr>" in page
    assert page.count("<td>") < 10


def test_the_mapping_form_never_builds_more_fields_than_the_cap(settings):
    settings.IMPORT_MAX_COLUMNS = 3
    with pytest.raises(FileRejected, match="This file has 4 columns; at most 3 are supported."):
        MappingForm(header=["a", "b", "c", "d"], mapping={})


# ---------------------------------------------------------------------------------------------
# The import itself: the same limits, and memory bounded whatever the file


def imported(plan, path: Path) -> tuple[Import, int]:
    with open(path, "rb") as stream:
        record = create_import(plan, stream, path.name, mode=Import.Mode.SKIP_INVALID)
    path.unlink()
    done, peak = measured(lambda: run_import(record.pk))
    assert done is not None
    return done, peak


def test_the_import_refuses_a_file_wider_than_the_cap(plan, settings):
    record = create_import(plan, io.BytesIO(wide(40)), "events.csv")
    settings.IMPORT_MAX_COLUMNS = 39
    done = run_import(record.pk)
    assert done is not None
    assert (done.status, done.message) == (
        "rejected",
        "This file has 40 columns; at most 39 are supported.",
    )
    assert Event.objects.count() == 0


def test_the_import_refuses_a_giant_line_in_bounded_memory(plan, tmp_path):
    path = write_file(
        tmp_path / "events.csv",
        [(wide(3, rows=1), 1), (b"c2,2026-03-01,visit,", 1), (b"x", 50 * MIB), (b"\n", 1)],
    )

    record, peak = imported(plan, path)

    assert (record.status, record.message) == (
        "rejected",
        "Line 3 is longer than 1 MiB: is this a CSV file?",
    )
    assert peak < SMALL_PEAK, f"{peak / MIB:.0f} MiB"
    assert Event.objects.count() == 0
    assert record.file.size == record.size_bytes


def test_a_row_that_runs_on_over_quoted_line_breaks_is_refused_in_bounded_memory(plan, tmp_path):
    """Each line is short, but quoted line breaks make them one row of millions of values."""
    path = write_file(
        tmp_path / "events.csv",
        [(wide(3, rows=1), 1), (b"c2,2026-03-01,visit", 1), (b',"a\n"', 4 * MIB), (b"\n", 1)],
    )

    record, peak = imported(plan, path)

    assert (record.status, record.message) == (
        "rejected",
        'The row that begins on line 3 runs on for more than 1 MiB: is a closing quote (") '
        "missing?",
    )
    assert peak < SMALL_PEAK, f"{peak / MIB:.0f} MiB"
    assert Event.objects.count() == 0


def test_an_unclosed_quote_is_still_a_row_error_and_the_other_rows_are_imported(plan, tmp_path):
    path = write_file(
        tmp_path / "events.csv",
        [
            (wide(3, rows=1), 1),
            (b'c2,2026-03-01,"visit\n', 1),
            (b"more text\n", MIB // 10 + 1000),  # just over the longest value
            (b"c3,2026-03-02,visit\n", 1),
        ],
    )

    record, peak = imported(plan, path)

    assert record.status == "succeeded"
    assert record.errors[0]["line"] == 3
    assert record.errors[0]["reason"].startswith('a quoted value is never closed (a " is missing)')
    assert sorted(Event.objects.values_list("customer_id", flat=True)) == ["c0", "c3"]
    assert peak < SMALL_PEAK, f"{peak / MIB:.0f} MiB"
