"""The event import (DOMAIN §4, §7): every kind of bad input told precisely, and identity.

Every test goes through the real engine (create_import + run_import, or the import_events
command) and runs on SQLite and on PostgreSQL (DATABASE_URL).
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import datetime as dt
import io
import threading
import zipfile
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.cache import cache, caches
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from insights.models import Event, Import
from insights.services.imports import (
    FileRejected,
    create_import,
    csvfiles,
    mark_stalled_imports,
    preview_file,
    progress,
    progress_key,
    read_progress,
    reading,
    run_import,
    sinks,
)
from insights.services.imports import rows as row_checks

pytestmark = pytest.mark.django_db

HEADER = "customer_id,occurred_at,event_type,value,segment,channel\n"
DATE_REASON = "is not a date; use ISO 8601 such as 2026-03-01 or 2026-03-01T14:05:00+01:00"
NUMBER_REASON = "is not a number; use digits and a dot for decimals, such as 1234.50"
NOT_UTF8 = "(save the file as “CSV UTF-8” and upload it again)"
UNCLOSED = 'a quoted value is never closed (a " is missing)'
SKIP = Import.Mode.SKIP_INVALID


@pytest.fixture(autouse=True)
def _own_cache(settings):
    """Progress lives in the cache: one of this test's own, not the shared files under var/."""
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    cache.clear()


def load(
    plan, content: str | bytes, *, name="events.csv", mode=Import.Mode.ALL_OR_NOTHING, mapping=None
) -> Import:
    data = content.encode() if isinstance(content, str) else content
    record = create_import(plan, io.BytesIO(data), name, mode=mode, mapping=mapping)
    done = run_import(record.pk)
    assert done is not None
    done.refresh_from_db()
    return done


def error(line: int, column: str, value: str, reason: str) -> dict:
    return {"line": line, "column": column, "value": value, "reason": reason}


def nothing_imported(record: Import, bad: int, read: int) -> None:
    assert record.status == "rejected"
    assert record.message == (
        f"Nothing was imported: {bad} of {read} rows have errors. Fix them and upload the file "
        "again, or import only the valid rows."
    )
    assert record.rows_imported == 0
    assert Event.objects.count() == 0


def rejected_rows(record: Import) -> list[list[str]]:
    with record.rejected_file.open("rb") as stream:
        return list(csv.reader(io.StringIO(stream.read().decode())))


def command(plan, tmp_path: Path, content: str | bytes, *args: str, name="events.csv"):
    """Run `manage.py import_events`: (stdout, the CommandError or None)."""
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    out = io.StringIO()
    try:
        call_command("import_events", plan.slug, str(path), *args, stdout=out)
    except CommandError as failure:
        return out.getvalue(), failure
    return out.getvalue(), None


# ---------------------------------------------------------------------------------------------
# Files that cannot be read at all


def test_empty_file_is_rejected_and_kept(plan):
    record = load(plan, b"")
    assert record.status == "rejected"
    assert record.message == "The file is empty."
    assert record.file.storage.exists(record.file.name)
    assert Event.objects.count() == 0


def test_empty_file_from_the_command(plan, tmp_path):
    out, failure = command(plan, tmp_path, b"")
    assert str(failure) == "The file is empty."
    assert out == "events.csv: 0 rows read, 0 imported, 0 duplicates skipped, 0 rejected.\n"


def test_header_only(plan):
    record = load(plan, HEADER)
    assert record.status == "rejected"
    assert record.message == "The file has a header but no rows of data."
    assert load(plan, HEADER + "\n\n").message == "The file has a header but no rows of data."
    assert Event.objects.count() == 0


def test_missing_required_column_names_it_and_lists_the_columns(plan, tmp_path):
    content = "customer_id,when,event_type,value\nc1,2026-03-01,purchase,10\n"
    record = load(plan, content)
    message = (
        "The file has no occurred_at column (the columns are: customer_id, when, event_type, "
        "value). Rename a column or map one onto it."
    )
    assert record.status == "rejected"
    assert record.message == message
    _, failure = command(plan, tmp_path, content)
    assert str(failure) == message
    assert Event.objects.count() == 0


def test_two_missing_columns(plan):
    record = load(plan, "id,when\nc1,2026-03-01\n")
    assert record.message == (
        "The file has no customer_id and no occurred_at and no event_type column (the columns "
        "are: id, when). Rename a column or map one onto it."
    )


def test_latin1_file_names_the_byte_its_line_and_position(plan, tmp_path):
    content = HEADER + "c1,2026-03-01,visit,,retail,web\nc2,2026-03-02,purchase,5,café,web\n"
    data = content.encode("latin-1")
    record = load(plan, data)
    nothing_imported(record, 1, 2)
    reason = f"byte 0xE9 at position 29 of the line is not UTF-8 {NOT_UTF8}"
    assert record.errors == [error(3, "segment", "caf\ufffd", reason)]
    out, failure = command(plan, tmp_path, data)
    assert f"  line 3 segment “caf\ufffd”: {reason}\n" in out
    assert str(failure).startswith("Nothing was imported: 1 of 2 rows have errors.")
    assert Event.objects.count() == 0


def test_latin1_header_rejects_the_file(plan):
    record = load(plan, "customer_id,occurred_at,event_type,catégorie\n".encode("latin-1"))
    assert record.status == "rejected"
    assert record.message == (
        f"The header line is not readable: byte 0xE9 at position 39 of the line is not UTF-8 "
        f"{NOT_UTF8}."
    )


def test_utf16_file(plan):
    record = load(plan, HEADER.encode("utf-16"))
    assert record.message == (
        "The file is UTF-16 text; save it as “CSV UTF-8” (comma delimited) and upload it again."
    )


BINARY = "This is not a CSV text file: it contains binary data (was another kind of file renamed to .csv?)."


def test_png_renamed_csv(plan):
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10\x00\x00\x00\x10\x08\x06\x00\x00\x00"
    record = load(plan, png)
    assert (record.status, record.message) == ("rejected", BINARY)
    with record.file.open("rb") as kept:
        assert kept.read() == png


def test_zip_renamed_csv(plan, tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("events.csv", HEADER + "c1,2026-03-01,visit,,,\n")
    record = load(plan, buffer.getvalue())
    assert (record.status, record.message) == ("rejected", BINARY)
    _, failure = command(plan, tmp_path, buffer.getvalue())
    assert str(failure) == BINARY


def test_over_limit_upload_is_refused_and_not_kept(plan, settings, tmp_path):
    settings.IMPORT_MAX_BYTES = 50
    content = (HEADER + "c1,2026-03-01,visit,,,\n").encode()
    with pytest.raises(FileRejected) as refused:
        create_import(plan, io.BytesIO(content), "events.csv")
    assert str(refused.value) == (
        f"The file is {len(content)} bytes; the largest accepted is 50 bytes."
    )
    _, failure = command(plan, tmp_path, content)
    assert str(failure) == f"The file is {len(content)} bytes; the largest accepted is 50 bytes."
    media = Path(settings.MEDIA_ROOT)
    assert not media.exists() or not [p for p in media.rglob("*") if p.is_file()]
    assert Import.objects.count() == 0


# ---------------------------------------------------------------------------------------------
# Rows with errors: all or nothing, or only the valid rows


def test_bad_dates(plan, tmp_path):
    content = (
        HEADER
        + "c1,2026-03-01,purchase,10,retail,web\n"
        + "c2,2026-13-01,purchase,10,retail,web\n"
        + "c3,yesterday,visit,,retail,web\n"
    )
    record = load(plan, content)
    nothing_imported(record, 2, 3)
    assert record.errors == [
        error(3, "occurred_at", "2026-13-01", DATE_REASON),
        error(4, "occurred_at", "yesterday", DATE_REASON),
    ]
    out, failure = command(plan, tmp_path, content)
    assert out.splitlines() == [
        "events.csv: 3 rows read, 0 imported, 0 duplicates skipped, 2 rejected.",
        f"  line 3 occurred_at “2026-13-01”: {DATE_REASON}",
        f"  line 4 occurred_at “yesterday”: {DATE_REASON}",
        f"Rejected rows: {Import.objects.latest('pk').rejected_file.path}",
    ]
    assert str(failure) == (
        "Nothing was imported: 2 of 3 rows have errors. Fix them and upload the file again, or "
        "import only the valid rows."
    )
    assert Event.objects.count() == 0


def test_bad_dates_skipped_with_skip_invalid(plan, tmp_path):
    content = (
        HEADER + "c1,2026-03-01,purchase,10,retail,web\n" + "c2,2026-13-01,purchase,10,retail,web\n"
    )
    record = load(plan, content, mode=SKIP)
    assert record.status == "succeeded"
    assert (record.rows_read, record.rows_imported, record.rows_rejected) == (2, 1, 1)
    assert list(Event.objects.values_list("customer_id", flat=True)) == ["c1"]
    assert rejected_rows(record) == [
        [
            "line",
            "errors",
            "customer_id",
            "occurred_at",
            "event_type",
            "value",
            "segment",
            "channel",
        ],
        ["3", f"occurred_at: {DATE_REASON}", "c2", "2026-13-01", "purchase", "10", "retail", "web"],
    ]
    out, failure = command(plan, tmp_path, content, "--skip-invalid")
    assert failure is None
    assert out.splitlines()[:2] == [
        "events.csv: 2 rows read, 0 imported, 1 duplicates skipped, 1 rejected.",
        f"  line 3 occurred_at “2026-13-01”: {DATE_REASON}",
    ]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ('"12,5"', NUMBER_REASON),
        ("NaN", NUMBER_REASON),
        ("Infinity", NUMBER_REASON),
        ("12.5.1", NUMBER_REASON),
        ("1.1234567", "has more than 6 decimal places"),
        ("123456789012345", "is too large"),
        ("123456789012345678901234567.1234567", "is too large"),
    ],
)
def test_bad_numbers(plan, value, reason):
    record = load(plan, HEADER + "c1,2026-03-01,visit,,,\n" + f"c2,2026-03-01,purchase,{value},,\n")
    nothing_imported(record, 1, 2)
    assert record.errors == [error(3, "value", value.strip('"'), reason)]


def test_numbers_that_are_fine(plan):
    record = load(
        plan,
        HEADER
        + "c1,2026-03-01,purchase,1234.567891,,\n"
        + "c2,2026-03-01,purchase,-3,,\n"
        + "c3,2026-03-01,purchase,2.5000000,,\n"
        + "c4,2026-03-01,purchase, 7 ,,\n"
        + "c5,2026-03-01,visit,,,\n",
    )
    assert record.status == "succeeded"
    values = dict(Event.objects.values_list("customer_id", "value"))
    assert values == {
        "c1": Decimal("1234.567891"),
        "c2": Decimal("-3"),
        "c3": Decimal("2.5"),
        "c4": Decimal("7"),
        "c5": None,
    }


def test_several_errors_on_one_row(plan):
    """Every field's reason, in DOMAIN §4's order of the fields."""
    record = load(plan, HEADER + ",yesterday,,x1,,\n")
    nothing_imported(record, 1, 1)
    assert record.errors == [
        error(2, "customer_id", "", "is empty"),
        error(2, "occurred_at", "yesterday", DATE_REASON),
        error(2, "event_type", "", "is empty"),
        error(2, "value", "x1", NUMBER_REASON),
    ]


def test_too_long_values(plan):
    record = load(plan, HEADER + f"{'c' * 201},2026-03-01,visit,,,\n")
    assert record.errors == [error(2, "customer_id", "c" * 201, "is longer than 200 characters")]


def test_ragged_rows(plan, tmp_path):
    content = (
        HEADER
        + "c1,2026-03-01,purchase,10,retail,web\n"
        + "c2,2026-03-02,purchase,10,retail\n"
        + "c3,2026-03-03,purchase,10,retail,web,extra\n"
    )
    record = load(plan, content)
    nothing_imported(record, 2, 3)
    assert record.errors == [
        error(3, "", "", "5 values where the header has 6 columns"),
        error(4, "", "", "7 values where the header has 6 columns"),
    ]
    out, _ = command(plan, tmp_path, content)
    assert "  line 3: 5 values where the header has 6 columns\n" in out
    record = load(plan, content, mode=SKIP)
    assert (record.rows_imported, record.rows_rejected) == (1, 2)
    assert rejected_rows(record)[1:] == [
        [
            "3",
            "5 values where the header has 6 columns",
            "c2",
            "2026-03-02",
            "purchase",
            "10",
            "retail",
        ],
        [
            "4",
            "7 values where the header has 6 columns",
            "c3",
            "2026-03-03",
            "purchase",
            "10",
            "retail",
            "web",
            "extra",
        ],
    ]


def test_unterminated_quote(plan, tmp_path):
    content = (
        HEADER
        + "c1,2026-03-01,purchase,10,retail,web\n"
        + 'c2,2026-03-02,purchase,"20,retail,web\n'
        + "c3,2026-03-03,visit,,retail,web\n"
    )
    record = load(plan, content)
    nothing_imported(record, 1, 2)
    reason = f"{UNCLOSED}, so lines 3 to 4 were read as one value"
    assert record.errors == [error(3, "", "", reason)]
    out, failure = command(plan, tmp_path, content)
    assert f"  line 3: {reason}\n" in out
    assert failure is not None
    record = load(plan, content, mode=SKIP)
    assert list(Event.objects.values_list("customer_id", flat=True)) == ["c1"]


def test_line_numbers_across_read_blocks(plan, monkeypatch):
    """The file is decoded a block at a time: line numbers, bad bytes and quoted line breaks
    come out the same when they straddle blocks, and a line longer than a block is read whole."""
    monkeypatch.setattr(csvfiles, "READ_BLOCK_BYTES", 16)
    lines = [f"c{i},2026-03-01,visit,,retail,web\n".encode() for i in range(2, 12)]
    lines[4] = "c6,2026-03-01,visit,,caf\u00e9,web\n".encode("latin-1")
    lines[6] = b'c8,2026-03-01,visit,,"a\nlong\nquoted value",web\n'
    lines[8] = b"c10,yesterday,visit,,," + b"x" * 100 + b"\n"
    record = load(plan, HEADER.encode() + b"".join(lines), mode=SKIP)
    assert record.errors == [
        error(
            6,
            "segment",
            "caf\ufffd",
            f"byte 0xE9 at position 25 of the line is not UTF-8 {NOT_UTF8}",
        ),
        error(12, "occurred_at", "yesterday", DATE_REASON),
    ]
    assert record.rows_imported == 8
    assert Event.objects.get(customer_id="c8").segment == "a\nlong\nquoted value"
    assert Event.objects.get(customer_id="c11").segment == "retail"


def test_quote_in_the_middle_of_a_value(plan):
    record = load(plan, HEADER + 'c1,2026-03-01,purchase,10,"retail"x,web\n')
    assert record.errors == [
        error(2, "", "", "a quoted value is followed by more text; quote the whole value")
    ]


def test_quoted_line_breaks_keep_line_numbers(plan):
    content = (
        "customer_id,occurred_at,event_type,note\n"
        + 'c1,2026-03-01,visit,"two\nlines"\n'
        + "c2,2026-13-01,visit,\n"
    )
    record = load(plan, content, mode=SKIP)
    assert record.errors == [error(4, "occurred_at", "2026-13-01", DATE_REASON)]
    assert Event.objects.get().attributes == {"note": "two\nlines"}


# ---------------------------------------------------------------------------------------------
# Formats that are fine


def test_bom_file(plan):
    record = load(
        plan, codecs.BOM_UTF8 + (HEADER + "c1,2026-03-01,purchase,10,retail,web\n").encode()
    )
    assert record.status == "succeeded"
    assert record.encoding == "utf-8-sig"
    assert Event.objects.get().customer_id == "c1"
    assert Event.objects.get().attributes == {}


@pytest.mark.parametrize("delimiter", [";", "\t"])
def test_semicolon_and_tab(plan, delimiter):
    content = (
        delimiter.join(["customer_id", "occurred_at", "event_type", "value", "note"])
        + "\n"
        + delimiter.join(["c1", "2026-03-01", "purchase", "12.50", "a,b"])
        + "\n"
    )
    record = load(plan, content)
    assert record.status == "succeeded"
    assert record.delimiter == delimiter
    event = Event.objects.get()
    assert (event.value, event.attributes) == (Decimal("12.50"), {"note": "a,b"})


@pytest.mark.parametrize("newline", ["\r\n", "\r"])
def test_windows_and_classic_mac_line_endings(plan, newline):
    content = HEADER + "c1,2026-03-01,purchase,10,retail,web\nc2,2026-13-01,visit,,,\n"
    record = load(plan, content.replace("\n", newline), mode=SKIP)
    assert record.errors == [error(3, "occurred_at", "2026-13-01", DATE_REASON)]
    assert Event.objects.get().channel == "web"


def test_formula_cells_are_stored_as_text_and_neutralised_in_rejected_rows(plan):
    formula = '=HYPERLINK("http://x","y")'
    quoted = '"=HYPERLINK(""http://x"",""y"")"'
    content = (
        "customer_id,occurred_at,event_type,segment,note\n"
        + f"c1,2026-03-01,visit,{quoted},{quoted}\n"
        + f"c2,2026-13-01,visit,{quoted},@SUM(A1)\n"
    )
    record = load(plan, content, mode=SKIP)
    event = Event.objects.get()
    assert event.segment == formula
    assert event.attributes == {"note": formula}
    assert rejected_rows(record)[1] == [
        "3",
        f"occurred_at: {DATE_REASON}",
        "c2",
        "2026-13-01",
        "visit",
        "'" + formula,
        "'@SUM(A1)",
    ]


def test_header_names_match_case_insensitively(plan):
    record = load(plan, "Customer_ID,OCCURRED_AT,Event Type,Value\nc1,2026-03-01,visit,3\n")
    assert record.status == "succeeded"
    assert record.mapping == {
        "Customer_ID": "customer_id",
        "OCCURRED_AT": "occurred_at",
        "Event Type": "event_type",
        "Value": "value",
    }
    assert Event.objects.get().value == Decimal(3)


def test_map_a_column_from_the_command(plan, tmp_path):
    content = "client,occurred_at,event_type\nc1,2026-03-01,visit\n"
    out, failure = command(plan, tmp_path, content, "--map", "client=customer_id")
    assert failure is None
    assert out == "events.csv: 1 rows read, 1 imported, 0 duplicates skipped, 0 rejected.\n"
    event = Event.objects.get()
    assert (event.customer_id, event.attributes) == ("c1", {})
    out, failure = command(plan, tmp_path, content, "--map", "Client=Customer_ID", name="b.csv")
    assert failure is None


def test_map_replaces_the_column_that_had_the_name(plan):
    content = "customer_id,account,occurred_at,event_type\nperson-1,acme,2026-03-01,visit\n"
    load(plan, content, mapping={"account": "customer_id"})
    event = Event.objects.get()
    assert (event.customer_id, event.attributes) == ("acme", {"customer_id": "person-1"})


def test_map_errors(plan, tmp_path):
    content = "client,occurred_at,event_type\nc1,2026-03-01,visit\n"
    _, failure = command(plan, tmp_path, content, "--map", "cliente=customer_id")
    assert str(failure) == (
        "There is no column “cliente” to map onto customer_id (the columns are: client, "
        "occurred_at, event_type)."
    )
    _, failure = command(plan, tmp_path, content, "--map", "client=buyer")
    assert str(failure) == (
        "“buyer” is not an event field; map columns onto customer_id, occurred_at, event_type, "
        "value, segment, channel, event_id."
    )
    _, failure = command(plan, tmp_path, content, "--map", "client")
    assert str(failure) == "--map takes SOURCE=TARGET, not “client”."
    assert Event.objects.count() == 0


def test_unknown_plan_and_missing_file(plan, tmp_path):
    with pytest.raises(CommandError, match="There is no plan “nope”."):
        call_command("import_events", "nope", str(tmp_path / "x.csv"))
    with pytest.raises(CommandError, match="Cannot read .*x.csv: No such file or directory."):
        call_command("import_events", plan.slug, str(tmp_path / "x.csv"))


def test_unknown_columns_are_kept_as_attributes(plan):
    load(
        plan, "customer_id,occurred_at,event_type,store,Basket Size\nc1,2026-03-01,visit,Lyon, 3 \n"
    )
    assert Event.objects.get().attributes == {"store": "Lyon", "Basket Size": " 3 "}


def test_unnamed_columns_keep_their_values(plan):
    """Spreadsheets often end every line with a delimiter: an empty, unnamed column."""
    load(
        plan,
        "customer_id,occurred_at,event_type,,\nc1,2026-03-01,visit,,\nc2,2026-03-01,visit,x,\n",
    )
    assert dict(Event.objects.values_list("customer_id", "attributes")) == {
        "c1": {},
        "c2": {"column 4": "x"},
    }


def test_duplicate_column_names(plan):
    record = load(plan, "customer_id,occurred_at,event_type,Value,value\nc1,2026-03-01,visit,1,2\n")
    assert record.message == "The header names the column Value, value more than once."


def test_dates_and_times(plan):
    load(
        plan,
        HEADER
        + "day,2026-03-01,visit,,,\n"
        + "naive,2026-03-01T14:05:00,visit,,,\n"
        + "offset,2026-03-01T14:05:00+01:00,visit,,,\n"
        + "zulu,2026-03-01T14:05:00Z,visit,,,\n"
        + "space,2026-03-01 14:05,visit,,,\n",
    )
    utc = dt.UTC
    assert dict(Event.objects.values_list("customer_id", "occurred_at")) == {
        "day": dt.datetime(2026, 3, 1, tzinfo=utc),
        "naive": dt.datetime(2026, 3, 1, 14, 5, tzinfo=utc),
        "offset": dt.datetime(2026, 3, 1, 13, 5, tzinfo=utc),
        "zulu": dt.datetime(2026, 3, 1, 14, 5, tzinfo=utc),
        "space": dt.datetime(2026, 3, 1, 14, 5, tzinfo=utc),
    }


def test_other_iso_forms_and_numbers(plan):
    load(
        plan,
        HEADER
        + "basic,20260301,visit,1e3,,\n"
        + "hour,2026-03-01T14,visit,.5,,\n"
        + "micro,2026-03-01T14:05:00.123456-02:30,visit,+5,,\n"
        + "far,2026-03-01T14:05:00+20:00,visit,,,\n",
    )
    events = {e.customer_id: (e.occurred_at, e.value) for e in Event.objects.all()}
    assert events == {
        "basic": (dt.datetime(2026, 3, 1, tzinfo=dt.UTC), Decimal(1000)),
        "hour": (dt.datetime(2026, 3, 1, 14, tzinfo=dt.UTC), Decimal("0.5")),
        "micro": (dt.datetime(2026, 3, 1, 16, 35, 0, 123456, tzinfo=dt.UTC), Decimal(5)),
        "far": (dt.datetime(2026, 2, 28, 18, 5, tzinfo=dt.UTC), None),
    }


def test_dates_python_cannot_read_back_are_refused(plan):
    record = load(plan, HEADER + "c1,0001-01-01T00:00:00+05:00,visit,,,\n")
    assert record.errors == [error(2, "occurred_at", "0001-01-01T00:00:00+05:00", DATE_REASON)]


def test_backslashes_tabs_and_line_breaks_are_stored_exactly(plan):
    content = (
        "customer_id,occurred_at,event_type,segment,note\n"
        + 'c\\1,2026-03-01,visit,a\tb,"line\nbreak"\n'
        + 'c2,2026-03-01,visit,\\N,"carriage\rreturn"\n'
        + "c3,2026-03-01,visit,,\n"
    )
    record = load(plan, content)
    assert record.rows_imported == 3
    events = {e.customer_id: (e.segment, e.attributes, e.event_id) for e in Event.objects.all()}
    assert events == {
        "c\\1": ("a\tb", {"note": "line\nbreak"}, None),
        "c2": ("\\N", {"note": "carriage\rreturn"}, None),
        "c3": ("", {"note": ""}, None),
    }


def test_event_type_lower_case_and_values_stored_exactly(plan):
    load(plan, HEADER + " c1 ,2026-03-01,Support_Ticket,1234.567891, Retail ,Web\n")
    event = Event.objects.get()
    assert event.customer_id == "c1"
    assert event.event_type == "support_ticket"
    assert event.value == Decimal("1234.567891")
    assert (event.segment, event.channel) == ("Retail", "Web")
    assert event.event_id is None


def test_the_uploaded_file_is_kept_as_uploaded(plan):
    good = (HEADER + "c1,2026-03-01,visit,,,\n").encode()
    bad = (HEADER + "c1,yesterday,visit,,,\n").encode()
    for content, status in [(good, "succeeded"), (bad, "rejected"), (b"\x00\x01", "rejected")]:
        record = load(plan, content, name="../my events.csv")
        assert record.status == status
        assert record.original_name == "my events.csv"
        assert record.size_bytes == len(content)
        with record.file.open("rb") as kept:
            assert kept.read() == content


def test_preview(plan, tmp_path):
    path = tmp_path / "p.csv"
    path.write_bytes(codecs.BOM_UTF8 + b"client;when;Event_Type\nc1;2026-03-01;visit\n")
    preview = preview_file(path, {"client": "customer_id"})
    assert (preview.encoding, preview.delimiter_name) == ("utf-8-sig", "semicolon")
    assert preview.header == ["client", "when", "Event_Type"]
    assert preview.rows == [["c1", "2026-03-01", "visit"]]
    assert preview.mapping == {"Event_Type": "event_type", "client": "customer_id"}
    path.write_bytes(b"")
    with pytest.raises(FileRejected, match="The file is empty."):
        preview_file(path)


# ---------------------------------------------------------------------------------------------
# Identity (DOMAIN §4)


ROWS = (
    "c1,2026-03-01,purchase,10,retail,web\n"
    "c2,2026-03-02,visit,,retail,app\n"
    "c3,2026-03-03,purchase,5.5,smb,store\n"
)


def test_the_same_file_twice_is_stored_once(plan):
    first = load(plan, HEADER + ROWS)
    assert (first.rows_imported, first.rows_duplicate) == (3, 0)
    second = load(plan, HEADER + ROWS)
    assert second.status == "succeeded"
    assert (second.rows_read, second.rows_imported, second.rows_duplicate) == (3, 0, 3)
    assert Event.objects.count() == 3
    assert set(Event.objects.values_list("source_import", flat=True)) == {first.pk}


def test_two_identical_rows_in_one_file_are_two_events(plan):
    record = load(plan, HEADER + ROWS + "c1,2026-03-01,purchase,10,retail,web\n")
    assert record.rows_imported == 4
    assert Event.objects.filter(customer_id="c1").count() == 2
    again = load(plan, HEADER + ROWS + "c1,2026-03-01,purchase,10,retail,web\n")
    assert (again.rows_imported, again.rows_duplicate) == (0, 4)
    third = load(plan, HEADER + "c1,2026-03-01,purchase,10,retail,web\n" * 3)
    assert (third.rows_imported, third.rows_duplicate) == (1, 2)
    assert Event.objects.filter(customer_id="c1").count() == 3


def test_a_later_export_adds_only_the_new_rows(plan):
    load(plan, HEADER + ROWS)
    later = load(plan, HEADER + ROWS.splitlines(keepends=True)[1] + "c4,2026-03-04,visit,,,\n")
    assert (later.rows_imported, later.rows_duplicate) == (1, 1)
    assert sorted(Event.objects.values_list("customer_id", flat=True)) == ["c1", "c2", "c3", "c4"]


def test_rows_with_event_id_deduplicate_by_it(plan):
    header = "event_id,customer_id,occurred_at,event_type,value\n"
    load(plan, header + "e1,c1,2026-03-01,purchase,10\ne2,c1,2026-03-02,purchase,20\n")
    again = load(plan, header + "e1,c1,2026-03-05,purchase,99\ne3,c9,2026-03-02,visit,\n")
    assert (again.rows_imported, again.rows_duplicate) == (1, 1)
    assert Event.objects.get(event_id="e1").value == Decimal(10)
    within = load(plan, header + "e4,c1,2026-03-01,visit,\ne4,c2,2026-03-09,visit,\n")
    assert (within.rows_imported, within.rows_duplicate) == (1, 1)
    assert Event.objects.count() == 4


def test_events_stored_meanwhile_by_another_writer(plan, monkeypatch):
    """On PostgreSQL new rows go in without ON CONFLICT, the stored ones left out; if another
    writer (one that takes no lock) stored some meanwhile, ON CONFLICT takes over."""
    first = load(plan, HEADER + ROWS)
    # As if the stored rows had come in after the check.
    monkeypatch.setattr(sinks.PostgresSink, "ALREADY_STORED", "")
    again = load(plan, HEADER + ROWS + "c4,2026-03-04,visit,,,\n")
    assert (again.rows_imported, again.rows_duplicate) == (1, 3)
    assert Event.objects.count() == 4
    assert Event.objects.filter(source_import=first).count() == 3


def test_identity_survives_a_mapping_and_other_column_order(plan):
    load(plan, HEADER + ROWS)
    reordered = "channel,segment,value,event_type,occurred_at,client\n" + "".join(
        ",".join(reversed(line.split(","))) + "\n" for line in ROWS.splitlines()
    )
    again = load(plan, reordered, mapping={"client": "customer_id"})
    assert (again.rows_imported, again.rows_duplicate) == (0, 3)


def test_dedupe_keys_are_the_model_identity(plan):
    """The engine's keys are Event.identity's, so events imported by any version match."""
    content = (
        "customer_id,occurred_at,event_type,value,Note,event_id\n"
        + 'c"1,2026-03-01T10:00:00+02:00,Visit, 5 ,"é \\ ""q""\ttab",\n'
        + 'c"1,2026-03-01T10:00:00+02:00,Visit, 5 ,"é \\ ""q""\ttab",\n'
        + "c2,2026-03-01,visit,,\u2028x\U0001f600,\n"
        + "c3,2026-03-01,visit,,, e-9 \n"
    )
    load(plan, content)
    keys = set(Event.objects.values_list("dedupe_key", flat=True))
    first = {
        "customer_id": 'c"1',
        "occurred_at": "2026-03-01T10:00:00+02:00",
        "event_type": "Visit",
        "value": "5",
        "event_id": "",
        "attr:Note": 'é \\ "q"\ttab',
    }
    second = {
        **first,
        "customer_id": "c2",
        "occurred_at": "2026-03-01",
        "event_type": "visit",
        "value": "",
        "attr:Note": "\u2028x\U0001f600",
    }
    assert keys == {
        Event.identity(None, first, 0),
        Event.identity(None, first, 1),
        Event.identity(None, second, 0),
        Event.identity("e-9", {}, 0),
    }


# ---------------------------------------------------------------------------------------------
# Progress, claiming, stalled imports


def test_read_progress_while_running_and_after(plan):
    record = create_import(plan, io.BytesIO(b"x" * 1000), "events.csv")
    assert read_progress(record) == {"rows": 0, "rate": 0, "fraction": 0.0, "seconds_left": 0}
    record.status = "running"
    cache.set(progress_key(record.pk), {"rows": 500, "bytes": 250, "started": 100.0, "at": 102.0})
    assert read_progress(record) == {
        "rows": 500,
        "rate": 250.0,
        "fraction": 0.25,
        "seconds_left": 6.0,
    }
    done = load(plan, HEADER + ROWS)
    assert read_progress(done) == {"rows": 3, "rate": 0, "fraction": 1.0, "seconds_left": 0}


def test_progress_is_written_while_importing(plan, monkeypatch):
    seen = []
    backend = caches["default"]
    real_set = backend.set

    def spy(key, value, *args, **kwargs):
        seen.append((key, value))
        return real_set(key, value, *args, **kwargs)

    monkeypatch.setattr(progress, "PROGRESS_EVERY_SECONDS", 0)
    monkeypatch.setattr(progress, "PROGRESS_EVERY_ROWS", 1)
    monkeypatch.setattr(backend, "set", spy)
    record = load(plan, HEADER + ROWS)
    written = [value for key, value in seen if key == progress_key(record.pk)]
    assert written and written[-1]["rows"] >= 1
    assert cache.get(progress_key(record.pk)) is None  # cleared at the end


def test_run_import_twice_imports_once(plan):
    record = create_import(plan, io.BytesIO((HEADER + ROWS).encode()), "events.csv")
    assert run_import(record.pk).status == "succeeded"
    assert run_import(record.pk) is None
    assert Event.objects.count() == 3


def test_a_draft_is_not_started(plan):
    record = create_import(plan, io.BytesIO((HEADER + ROWS).encode()), "events.csv")
    Import.objects.filter(pk=record.pk).update(status="draft")
    assert run_import(record.pk) is None
    assert Event.objects.count() == 0


def running(plan, heartbeat_age: dt.timedelta) -> Import:
    record = create_import(plan, io.BytesIO((HEADER + ROWS).encode()), "events.csv")
    beat = timezone.now() - heartbeat_age
    Import.objects.filter(pk=record.pk).update(status="running", started_at=beat, heartbeat_at=beat)
    return record


def test_a_stalled_import_becomes_failed_and_can_be_retried(plan):
    stalled = running(plan, dt.timedelta(minutes=10))
    fresh = running(plan, dt.timedelta(seconds=5))
    assert run_import(fresh.pk) is None  # its worker is alive: nobody else takes it
    assert mark_stalled_imports() == 1
    stalled.refresh_from_db()
    assert stalled.status == "failed"
    assert stalled.message == (
        "The import was interrupted before it finished. Nothing from it was saved; retry it to "
        "import the file again."
    )
    assert stalled.finished_at is not None
    fresh.refresh_from_db()
    assert fresh.status == "running"
    retried = run_import(stalled.pk)
    assert (retried.status, retried.rows_imported) == ("succeeded", 3)
    assert mark_stalled_imports() == 0


def test_a_long_import_with_a_fresh_progress_heartbeat_is_not_stalled(plan):
    """The database heartbeat is old (the import's transaction hides its writes), the cache's is
    fresh: the worker is alive."""
    record = running(plan, dt.timedelta(minutes=10))
    now = timezone.now().timestamp()
    cache.set(progress_key(record.pk), {"rows": 9, "bytes": 9, "started": now - 600, "at": now})
    assert mark_stalled_imports() == 0
    assert run_import(record.pk) is None
    record.refresh_from_db()
    assert record.status == "running"


def test_a_running_import_whose_worker_died_is_reclaimed_by_a_redelivery(plan):
    record = running(plan, dt.timedelta(minutes=10))
    redelivered = run_import(record.pk)
    assert (redelivered.status, redelivered.rows_imported) == ("succeeded", 3)


def test_an_unexpected_failure_is_failed_and_retryable(plan, monkeypatch):
    record = create_import(plan, io.BytesIO((HEADER + ROWS).encode()), "events.csv")

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(row_checks, "parse_occurred_at", broken)
    with pytest.raises(RuntimeError):
        run_import(record.pk)
    record.refresh_from_db()
    assert record.status == "failed"
    assert record.message == (
        "The import stopped on an unexpected problem; nothing from it was saved. Retry it, and "
        "tell support if it happens again."
    )
    assert Event.objects.count() == 0
    monkeypatch.undo()
    assert run_import(record.pk).rows_imported == 3


# ---------------------------------------------------------------------------------------------
# Batches: parsed in a thread while the batch before is stored


@pytest.fixture
def tiny_batches(monkeypatch):
    """Batches of 4 rows, parsed 2 at a time: a small file crosses many batches."""
    monkeypatch.setattr(reading, "WRITE_BATCH_ROWS", 2)
    monkeypatch.setattr(sinks.PostgresSink, "batch_rows", 4)
    monkeypatch.setattr(sinks.BatchSink, "batch_rows", 4)


def parser_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "import-parser"]


def test_repeats_across_and_within_batches_are_stored_once(plan, tiny_batches):
    header = "event_id,customer_id,occurred_at,event_type\n"
    lines = [f"e{i % 7},c{i},2026-03-{1 + i % 28:02},visit\n" for i in range(23)]
    lines += ["e0,c0,2026-03-01,visit\n"] * 3  # the same row again: its first copy is kept
    lines += [",c9,2026-03-09,visit\n"] * 2  # no event_id: two identical rows are two events
    content = header + "".join(lines)
    first = load(plan, content)
    assert (first.status, first.rows_read, first.rows_imported, first.rows_duplicate) == (
        "succeeded",
        28,
        9,
        19,
    )
    # Each event_id kept its first row in the file.
    assert Event.objects.get(event_id="e3").customer_id == "c3"
    assert Event.objects.filter(event_id__isnull=True).count() == 2
    again = load(plan, content)  # a plan that holds them: every batch checks what is stored
    assert (again.rows_imported, again.rows_duplicate) == (0, 28)
    more = load(plan, content.replace("e0,", "e100,"))
    assert (more.rows_imported, more.rows_duplicate) == (1, 27)
    assert Event.objects.count() == 10
    assert not parser_threads()


def test_a_bad_row_in_a_late_batch_leaves_nothing(plan, tiny_batches):
    rows = "".join(f"c{i},2026-03-{1 + i % 28:02},visit,,,\n" for i in range(30))
    record = load(plan, HEADER + rows + "c99,someday,visit,,,\n")
    nothing_imported(record, bad=1, read=31)
    assert record.errors == [error(32, "occurred_at", "someday", DATE_REASON)]
    skipped = load(plan, HEADER + rows + "c99,someday,visit,,,\n", mode=Import.Mode.SKIP_INVALID)
    assert (skipped.status, skipped.rows_imported, skipped.rows_rejected) == ("succeeded", 30, 1)
    assert not parser_threads()


def test_a_failure_while_storing_stops_the_parser_and_saves_nothing(
    plan, tiny_batches, monkeypatch
):
    rows = "".join(f"c{i},2026-03-{1 + i % 28:02},visit,,,\n" for i in range(40))
    record = create_import(plan, io.BytesIO((HEADER + rows).encode()), "events.csv")
    sink = sinks.PostgresSink if connection.vendor == "postgresql" else sinks.BatchSink
    real_open = sink.open
    stored = []

    @contextlib.contextmanager
    def failing_open(self, beat):
        with real_open(self, beat) as store:

            def store_twice(batch):
                if len(stored) == 2:
                    raise OSError("disk full")
                stored.append(batch)
                store(batch)

            yield store_twice

    monkeypatch.setattr(sink, "open", failing_open)
    with pytest.raises(OSError, match="disk full"):
        run_import(record.pk)
    record.refresh_from_db()
    assert record.status == "failed"
    assert Event.objects.count() == 0
    assert not parser_threads()
