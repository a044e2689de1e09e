"""Plan files from anyone: bounded in bytes, depth, number length and counts, each refusal naming
its limit, in the web app and on the command line alike, with nothing written."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.urls import reverse

from planning.models import Plan, StrategicChoice
from planning.planfile import PlanFileError, import_plan, load_plan_file
from planning.planfile.loading import check_plan_data

pytestmark = pytest.mark.django_db

REPO = Path(__file__).resolve().parents[2]
DEEP = '{"name": "Deep", "slug": "deep", "choices": ' + "[" * 100_000 + "]" * 100_000 + "}"
DEEP_MESSAGE = (
    "This plan file nests lists and objects 100,001 levels deep; at most 20 levels are allowed."
)
LONG_NUMBER = "7" * 5000
LONG_MESSAGE = (
    "The number 77777777777777777777… in this plan file is 5,000 characters long; "
    "at most 100 are allowed."
)


def long_number_file() -> str:
    return (
        '{"name": "Costly", "slug": "costly", "bt_initiatives": '
        f'[{{"title": "Billing", "cost_estimate": {LONG_NUMBER}}}]}}'
    )


def many_choices(count: int) -> dict[str, Any]:
    return {
        "name": "Crowded",
        "slug": "crowded",
        "choices": [{"title": f"Choice {i}"} for i in range(count)],
    }


def post_file(persona, content: str | bytes):
    raw = content.encode() if isinstance(content, str) else content
    upload = SimpleUploadedFile("plan.json", raw, "application/json")
    return persona.client.post(reverse("planning:new_plan"), {"plan_file": upload})


def import_command(tmp_path: Path, content: str | bytes) -> tuple[CommandError, str]:
    source = tmp_path / "plan.json"
    source.write_bytes(content.encode() if isinstance(content, str) else content)
    err = io.StringIO()
    with pytest.raises(CommandError) as refused:
        call_command("import_plan", str(source), stderr=err, stdout=io.StringIO())
    return refused.value, err.getvalue()


def test_the_defaults_are_the_documented_ones():
    assert django_settings.PLANFILE_MAX_BYTES == 5 * 1024 * 1024
    assert django_settings.PLANFILE_MAX_DEPTH == 20
    assert django_settings.PLANFILE_MAX_CHOICES == 500
    assert django_settings.PLANFILE_MAX_ASSUMPTIONS == 2000
    assert django_settings.PLANFILE_MAX_MEMBERS == 200
    readme = (REPO / "README.md").read_text()
    for name in ["PLANFILE_MAX_BYTES", "PLANFILE_MAX_DEPTH", "PLANFILE_MAX_ASSUMPTIONS"]:
        assert f"`{name}`" in readme


# --- nesting: 100,000 levels deep ---------------------------------------------------------------


def test_a_file_nested_100_000_deep_is_refused_on_the_web(outsider):
    response = post_file(outsider, DEEP)

    assert response.status_code == 400
    assert DEEP_MESSAGE in response.content.decode()
    assert Plan.objects.count() == 0


def test_a_file_nested_100_000_deep_is_refused_by_the_command(tmp_path):
    error, stderr = import_command(tmp_path, DEEP)

    assert DEEP_MESSAGE in stderr
    assert "nothing was imported" in str(error)
    assert Plan.objects.count() == 0


def test_brackets_inside_strings_do_not_count_as_nesting():
    data = {"name": "[[[[" * 30 + '"\\"{{' * 30, "slug": "brackets"}

    assert load_plan_file(json.dumps(data)) == data


# --- numbers: 5,000 digits ----------------------------------------------------------------------


def test_a_5000_digit_number_is_refused_on_the_web(outsider):
    response = post_file(outsider, long_number_file())

    assert response.status_code == 400
    assert LONG_MESSAGE in response.content.decode()
    assert Plan.objects.count() == 0


def test_a_5000_digit_number_is_refused_by_the_command(tmp_path):
    _, stderr = import_command(tmp_path, long_number_file())

    assert LONG_MESSAGE in stderr
    assert Plan.objects.count() == 0


@pytest.mark.parametrize(
    ("literal", "message"),
    [
        ("1e999", "The number 1e999 in this plan file is too large."),
        ("0." + "1" * 200, "is 202 characters long; at most 100 are allowed."),
    ],
)
def test_a_float_no_number_can_hold_is_refused(literal, message):
    with pytest.raises(PlanFileError) as refused:
        load_plan_file(f'{{"name": "X", "slug": "x", "description": {literal}}}')
    assert message in refused.value.errors[0]


# --- the real command line: a message and a non-zero exit, never a traceback ---------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [(DEEP, DEEP_MESSAGE), (long_number_file(), LONG_MESSAGE)],
    ids=["deep", "long-number"],
)
def test_the_command_line_prints_the_refusal_without_a_traceback(tmp_path, content, message):
    source = tmp_path / "plan.json"
    source.write_text(content, encoding="utf-8")
    env = {**os.environ, "OUTSIDE_IN_VAR_DIR": str(tmp_path / "var")}

    done = subprocess.run(
        [sys.executable, str(REPO / "manage.py"), "import_plan", str(source)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )

    assert done.returncode != 0
    assert message in done.stderr
    assert "nothing was imported" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


# --- counts -------------------------------------------------------------------------------------


def test_ten_thousand_choices_are_refused_on_the_web(outsider):
    response = post_file(outsider, json.dumps(many_choices(10_000)))

    assert response.status_code == 400
    assert "This plan file has 10,000 choices; at most 500 are allowed." in (
        response.content.decode()
    )
    assert Plan.objects.count() == 0
    assert StrategicChoice.objects.count() == 0


def test_one_choice_over_the_limit_is_refused_by_the_command(tmp_path):
    error, stderr = import_command(tmp_path, json.dumps(many_choices(501)))

    assert "This plan file has 501 choices; at most 500 are allowed." in stderr
    assert "1 error; nothing was imported" in str(error)
    assert Plan.objects.count() == 0


def test_the_benchmark_times_the_largest_plan_file_the_limits_allow(settings):
    from bench.imports import largest_plan_file

    data = largest_plan_file(settings)

    check_plan_data(data)  # within every limit…
    assert len(json.dumps(data).encode()) <= settings.PLANFILE_MAX_BYTES
    choices = data["choices"]
    assert len(data["stages"]) == settings.PLANFILE_MAX_STAGES
    assert len(data["event_map"]) == settings.PLANFILE_MAX_EVENT_TYPES
    assert len(data["members"]) == settings.PLANFILE_MAX_MEMBERS
    assert len(choices) == settings.PLANFILE_MAX_CHOICES
    assert sum(len(c["assumptions"]) for c in choices) == settings.PLANFILE_MAX_ASSUMPTIONS
    assert len(data["bt_initiatives"]) == settings.PLANFILE_MAX_INITIATIVES
    choices[0]["assumptions"].append({"statement": "One more"})
    with pytest.raises(PlanFileError, match="assumptions; at most"):  # …and at each of them
        check_plan_data(data)


def test_at_the_limit_the_plan_is_imported(db):
    plan, created = import_plan(many_choices(500))

    assert created and plan.choices.count() == 500


@pytest.mark.parametrize(
    ("setting", "data", "message"),
    [
        (
            "PLANFILE_MAX_ASSUMPTIONS",
            {
                "choices": [
                    {"title": f"C{c}", "assumptions": [{"statement": f"A{a}"} for a in range(2)]}
                    for c in range(2)
                ]
            },
            "This plan file has 4 assumptions; at most 3 are allowed.",
        ),
        (
            "PLANFILE_MAX_MEMBERS",
            {"members": [{"username": f"u{i}", "role": "cmo"} for i in range(4)]},
            "This plan file has 4 members; at most 3 are allowed.",
        ),
        (
            "PLANFILE_MAX_STAGES",
            {"stages": ["A", "B", "C", "D"]},
            "This plan file has 4 stages; at most 3 are allowed.",
        ),
        (
            "PLANFILE_MAX_EVENT_TYPES",
            {"event_map": {f"e{i}": "Buy" for i in range(4)}},
            "This plan file has 4 event types; at most 3 are allowed.",
        ),
        (
            "PLANFILE_MAX_INITIATIVES",
            {"bt_initiatives": [{"title": f"I{i}"} for i in range(4)]},
            "This plan file has 4 BT initiatives; at most 3 are allowed.",
        ),
    ],
)
def test_every_count_has_its_limit(settings, setting, data, message):
    setattr(settings, setting, 3)

    with pytest.raises(PlanFileError) as refused:
        import_plan({"name": "Counted", "slug": "counted", **data})

    # Said alone: the items of a file too large are not checked one by one.
    assert refused.value.errors == [message]
    assert Plan.objects.count() == 0


# --- bytes --------------------------------------------------------------------------------------


def oversized_file() -> bytes:
    padding = "x" * (6 * 1024 * 1024)
    return json.dumps({"name": "Big", "slug": "big", "description": padding}).encode()


def test_a_file_over_5_mb_is_refused_on_the_web_before_it_is_read(outsider):
    response = post_file(outsider, oversized_file())

    html = response.content.decode()
    assert response.status_code == 400
    assert "This plan file is 6.1 MB; at most 5 MB are allowed." in html
    assert Plan.objects.count() == 0


def test_a_file_over_the_limit_is_refused_by_the_command(tmp_path, settings):
    settings.PLANFILE_MAX_BYTES = 1000
    content = json.dumps({"name": "Big", "slug": "big", "description": "x" * 1999})
    assert len(content) == 2048  # 2 KB exactly

    _, stderr = import_command(tmp_path, content)

    assert "This plan file is 2 KB; at most 1,000 bytes are allowed." in stderr
    assert Plan.objects.count() == 0


def test_standard_input_is_read_no_further_than_the_limit(settings):
    settings.PLANFILE_MAX_BYTES = 1000
    stdin = io.StringIO(json.dumps({"name": "Big", "slug": "big", "description": "x" * 5000}))
    err = io.StringIO()

    with pytest.raises(CommandError):
        call_command("import_plan", "-", stdin=stdin, stderr=err)

    assert "This plan file is more than 1,000 bytes; at most 1,000 bytes are allowed." in (
        err.getvalue()
    )
    assert stdin.tell() == 1001
    assert Plan.objects.count() == 0
