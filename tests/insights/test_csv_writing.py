"""Every CSV the app writes is safe to open in a spreadsheet (issue 9, finding 11): each cell is
quoted, and no cell a reader can make of a line, whatever delimiter it splits on, begins a
formula."""

from __future__ import annotations

import csv
import io
import re
import time
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from insights import demo
from insights.models import Import
from insights.services.imports.csvfiles import CsvWriter, neutralise

PAYLOAD = "x;=cmd|' /C calc'!A0"
FORMULA_CHARACTERS = ("=", "+", "-", "@", "\t", "\r")
# The delimiters a spreadsheet may split a line on, whatever the file says.
DELIMITERS = [",", ";", "\t", "|"]
APP_CODE = ["config", "insights", "lifecycle", "planning"]


def cells(text: str, delimiter: str) -> list[str]:
    return [field for row in csv.reader(io.StringIO(text), delimiter=delimiter) for field in row]


def formulas(text: str) -> dict[str, list[str]]:
    """Per delimiter, the cells a reader splitting on it sees begin with a formula character."""
    found = {d: [c for c in cells(text, d) if c.startswith(FORMULA_CHARACTERS)] for d in DELIMITERS}
    return {d: bad for d, bad in found.items() if bad}


@pytest.mark.django_db
def test_rejected_rows_downloaded_by_the_cmo_hold_no_formula_for_any_delimiter(
    plan, cmo, tasks_inline, django_capture_on_commit_callbacks
):
    content = (
        "customer_id,occurred_at,event_type,note,=HYPERLINK(1)\n"
        "c1,2026-03-01,visit,fine,a\n"
        f'c2,2026-13-01,visit,{PAYLOAD},"a\t@SUM(A1)"\n'
        'c3,yesterday,visit,-5,"b, +1"\n'
    )
    cmo.client.post(
        reverse("insights:imports", args=[plan.slug]),
        {"file": SimpleUploadedFile("events.csv", content.encode(), content_type="text/csv")},
    )
    record = Import.objects.get()
    start = reverse("insights:import_start", args=[plan.slug, record.pk])
    mapping = {"column_0": "customer_id", "column_1": "occurred_at", "column_2": "event_type"}
    with django_capture_on_commit_callbacks(execute=True):
        cmo.client.post(start, {**mapping, "mode": "skip_invalid"})
    record.refresh_from_db()
    assert (record.status, record.rows_imported, record.rows_rejected) == ("succeeded", 1, 2)

    response = cmo.client.get(reverse("insights:import_rejected", args=[plan.slug, record.pk]))
    text = b"".join(response.streaming_content).decode()

    assert formulas(text) == {}
    # Every cell quoted, and read back with the file's own delimiter each says what it said.
    assert all(line.startswith('"') and line.endswith('"') for line in text.splitlines())
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == [
        "line",
        "errors",
        "customer_id",
        "occurred_at",
        "event_type",
        "note",
        "'=HYPERLINK(1)",
    ]
    assert rows[1][2:] == ["c2", "2026-13-01", "visit", "x;'=cmd|' /C calc'!A0", "a\t'@SUM(A1)"]
    assert rows[2][2:] == ["c3", "yesterday", "visit", "'-5", "b, '+1"]


@pytest.mark.parametrize(
    ("cell", "written"),
    [
        (PAYLOAD, "x;'=cmd|' /C calc'!A0"),
        ("=1+1", "'=1+1"),
        ("+1", "'+1"),
        ("-5", "'-5"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t'=1"),
        ("\rx", "'\rx"),
        ("a,=1", "a,'=1"),
        ("a\t-1", "a\t'-1"),
        ("a|@x", "a|'@x"),
        ("a\n=1", "a\n'=1"),
        ('a; "=1"', 'a; "\'=1"'),
        ("2026-03-01T14:05:00+01:00", "2026-03-01T14:05:00+01:00"),
        ("plain text, and more", "plain text, and more"),
        ("", ""),
    ],
)
def test_neutralise(cell, written):
    assert neutralise(cell) == written


@pytest.mark.parametrize("cell", ["\t" * 1_000_000, ";" + " " * 1_000_000, ', "' * 300_000])
def test_neutralise_takes_linear_time_on_any_cell(cell):
    started = time.perf_counter()
    neutralise(cell)
    assert time.perf_counter() - started < 0.5


def test_the_writer_quotes_every_cell_and_neutralises_each():
    text = io.StringIO()
    CsvWriter(text).writerow([3, PAYLOAD, "a\t+1", "ok"])
    assert text.getvalue() == '"3","x;\'=cmd|\' /C calc\'!A0","a\t\'+1","ok"\r\n'
    assert formulas(text.getvalue()) == {}


@pytest.mark.django_db
def test_the_demo_events_file_is_written_the_same_way():
    record = Import.objects.get(plan=demo.load_demo(customers=20).plan)
    with record.file.open("rb") as stored:
        text = stored.read().decode()
    assert text.startswith('"customer_id","occurred_at","event_type","value",')
    assert formulas(text) == {}


def test_every_csv_the_app_writes_goes_through_one_writer():
    root = Path(__file__).resolve().parents[2]
    writers = [
        f"{path.relative_to(root)}: {line.strip()}"
        for folder in APP_CODE
        for path in (root / folder).rglob("*.py")
        for line in path.read_text().splitlines()
        if re.search(r"\bcsv\.(writer|DictWriter)\(", line)
    ]
    assert writers == [
        "insights/services/imports/csvfiles.py: self.writer = csv.writer(text, quoting=csv.QUOTE_ALL)"
    ]
