"""The plan file (DOMAIN §6): export, import, and round trips that change nothing."""

from __future__ import annotations

import copy
import io
import json
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from lifecycle.models import DEFAULT_STAGES, EventMapping, Stage
from planning.models import (
    Activity,
    Assumption,
    AssumptionStatus,
    BTInitiative,
    Comment,
    Membership,
    Plan,
    StrategicChoice,
)
from planning.planfile import PlanFileError, export_plan, import_plan, load_plan_file

LOYALTY = "Launch a loyalty subscription"
HELP_CENTRE = "Open a self-service help centre"
REPEAT = "At least 30% of first-time buyers buy again within 90 days"
NPS = "Subscribers' NPS stays between 20 and 40"
HUNCH = "Store staff will promote the subscription"
REACH = "Fewer than a quarter of active customers need to ask for help"


def rich_file() -> dict[str, Any]:
    """DOMAIN §6's example, richer: every metric shape, `between`, nulls, three of everything."""
    return {
        "name": "FY2027 growth plan",
        "slug": "fy2027",
        "stages": ["Discover", "Explore", "Buy", "Use", "Ask", "Engage"],
        "event_map": {
            "ad_click": "Discover",
            "visit": "Explore",
            "purchase": "Buy",
            "signup": "Buy",
            "support_ticket": "Ask",
            "survey": "Engage",
        },
        "members": [
            {"username": "ana", "role": "cmo"},
            {"username": "maya", "role": "cio"},
            {"username": "raj", "role": "bu_leader", "business_unit": "Retail"},
        ],
        "retest_schedule": {
            "cadence": "weekly",
            "weekday": "mon",
            "time": "07:00",
            "timezone": "Europe/Paris",
        },
        "choices": [
            {
                "title": LOYALTY,
                "stages": ["Buy", "Engage"],
                "status": "proposed",
                "horizon": "now",
                "owner": "ana",
                "business_unit": "Retail",
                "rationale": "Repeat buyers are worth 3x first-time buyers.",
                "assumptions": [
                    {
                        "statement": REPEAT,
                        "importance": 5,
                        "evidence": 2,
                        "owner": "ana",
                        "test": {
                            "metric": "repeat_rate",
                            "params": {"event_type": "purchase", "within_days": 90},
                            "comparator": ">=",
                            "threshold": 0.3,
                            "min_sample": 30,
                            "segment": None,
                            "channel": None,
                            "window_days": None,
                        },
                    },
                    {
                        "statement": NPS,
                        "importance": 4,
                        "evidence": 1,
                        "owner": "raj",
                        "test": {
                            "metric": "nps",
                            "params": {"event_type": "survey"},
                            "comparator": "between",
                            "threshold": [20, 40.5],
                            "min_sample": 50,
                            "segment": "subscriber",
                            "channel": "app",
                            "window_days": 90,
                        },
                    },
                    {
                        "statement": HUNCH,
                        "importance": 3,
                        "evidence": 1,
                        "owner": None,
                        "test": None,
                    },
                ],
            },
            {
                "title": HELP_CENTRE,
                "stages": ["Ask"],
                "status": "adopted",
                "horizon": "next",
                "owner": "raj",
                "business_unit": "Retail",
                "rationale": "",
                "assumptions": [
                    {
                        "statement": REACH,
                        "importance": 4,
                        "evidence": 3,
                        "owner": "maya",
                        "test": {
                            "metric": "stage_reach",
                            "params": {"stage": "Ask"},
                            "comparator": "<=",
                            "threshold": 0.25,
                            "min_sample": 100,
                            "segment": None,
                            "channel": "web",
                            "window_days": 30,
                        },
                    },
                    {
                        "statement": "Visitors convert within 30 days",
                        "importance": 2,
                        "evidence": 4,
                        "owner": "ana",
                        "test": {
                            "metric": "conversion_rate",
                            "params": {
                                "from_event": "visit",
                                "to_event": "purchase",
                                "within_days": 30,
                            },
                            "comparator": ">=",
                            "threshold": 0.05,
                            "min_sample": 30,
                            "segment": None,
                            "channel": None,
                            "window_days": None,
                        },
                    },
                ],
            },
            {
                "title": "Retire the paper catalogue",
                "stages": [],
                "status": "retired",
                "horizon": "later",
                "owner": None,
                "business_unit": "",
                "rationale": "Nobody opens it.",
                "assumptions": [],
            },
        ],
        "bt_initiatives": [
            {
                "title": "Subscription billing platform",
                "stages": ["Buy"],
                "choices": [LOYALTY],
                "cost_estimate": 250000,
                "status": "planned",
            },
            {
                "title": "Help-centre search",
                "stages": ["Use", "Ask"],
                "choices": [LOYALTY, HELP_CENTRE],
                "cost_estimate": 1234.5,
                "status": "in_progress",
            },
            {
                "title": "Customer data lake",
                "stages": [],
                "choices": [],
                "cost_estimate": None,
                "status": "proposed",
            },
        ],
    }


@pytest.fixture
def users(db) -> dict[str, Any]:
    """Users without any plan: the plan file brings the plan."""
    user_model = get_user_model()
    return {
        name: user_model.objects.create_user(username=name, email=f"{name}@example.com")
        for name in ["ana", "maya", "raj", "olga"]
    }


PLAN_MODELS = [Plan, Stage, EventMapping, Membership, StrategicChoice, Assumption, BTInitiative]


def row_counts() -> dict[str, int]:
    counts = {model.__name__: model.objects.count() for model in PLAN_MODELS}
    counts["Activity"] = Activity.objects.count()
    counts["User"] = get_user_model().objects.count()
    return counts


def choice(data: dict[str, Any], title: str) -> dict[str, Any]:
    return next(item for item in data["choices"] if item["title"] == title)


# --- Round trips --------------------------------------------------------------------------------


def test_import_into_empty_database_then_export_equals_the_file(users):
    data = rich_file()

    plan, created = import_plan(data)

    assert created
    exported = export_plan(plan)
    assert exported == data
    # Exact down to key order and number types (250000 stays an integer, 1234.5 a decimal).
    assert json.dumps(exported) == json.dumps(data)
    assert isinstance(exported["bt_initiatives"][0]["cost_estimate"], int)


def test_export_import_export_is_identical(users):
    plan, _ = import_plan(rich_file())
    first = export_plan(plan)

    again, created = import_plan(copy.deepcopy(first))

    assert not created
    assert again.pk == plan.pk
    assert json.dumps(export_plan(again)) == json.dumps(first)


def test_the_domain_example_round_trips(users):
    data = rich_file()
    data["members"] = [data["members"][0], data["members"][2]]
    data["event_map"] = {"visit": "Explore", "purchase": "Buy", "support_ticket": "Ask"}
    loyalty = choice(data, LOYALTY)
    loyalty["assumptions"] = loyalty["assumptions"][:1]
    data["choices"] = [loyalty]
    data["bt_initiatives"] = data["bt_initiatives"][:1]

    plan, _ = import_plan(data)

    assert json.dumps(export_plan(plan)) == json.dumps(data)


def test_a_plan_built_in_the_app_round_trips(plan, cmo, bu_leader):
    plan.description = "Grow repeat purchases."
    plan.save()
    loyalty = StrategicChoice.objects.create(plan=plan, title=LOYALTY, owner=cmo.membership)
    loyalty.stages.set(plan.stages.filter(name__in=["Buy", "Engage"]))
    Assumption.objects.create(
        choice=loyalty,
        statement=NPS,
        metric="nps",
        params={"event_type": "survey"},
        comparator="between",
        threshold=20,
        threshold_high=40,
    )
    exported = export_plan(plan)

    Plan.objects.all().delete()
    imported, created = import_plan(copy.deepcopy(exported))

    assert created
    assert export_plan(imported) == exported
    assert exported["description"] == "Grow repeat purchases."
    assert exported["choices"][0]["assumptions"][0]["test"]["threshold"] == [20, 40]


def test_omitted_keys_take_their_defaults(users):
    data = {
        "name": "Bare plan",
        "slug": "bare",
        "members": [{"username": "ana", "role": "cmo"}],
        "choices": [
            {"title": "Do something", "assumptions": [{"statement": "It works"}]},
            {
                "title": "Test by hand",
                "assumptions": [{"statement": "Null test", "test": None}],
            },
            {
                "title": "Tested",
                "assumptions": [
                    {
                        "statement": "NPS is good",
                        "test": {"metric": "nps", "comparator": ">=", "threshold": 30},
                    }
                ],
            },
        ],
        "bt_initiatives": [{"title": "A platform"}],
    }

    plan, _ = import_plan(data)

    exported = export_plan(plan)
    assert exported["stages"] == DEFAULT_STAGES
    assert exported["event_map"] == {}
    assert exported["retest_schedule"] == {
        "cadence": "off",
        "weekday": "mon",
        "time": "07:00",
        "timezone": "UTC",
    }
    assert exported["choices"][0] == {
        "title": "Do something",
        "stages": [],
        "status": "proposed",
        "horizon": "now",
        "owner": None,
        "business_unit": "",
        "rationale": "",
        "assumptions": [
            {"statement": "It works", "importance": 3, "evidence": 1, "owner": None, "test": None}
        ],
    }
    assert exported["choices"][2]["assumptions"][0]["test"] == {
        "metric": "nps",
        "params": {"event_type": "survey"},
        "comparator": ">=",
        "threshold": 30,
        "min_sample": 30,
        "segment": None,
        "channel": None,
        "window_days": None,
    }
    assert exported["bt_initiatives"] == [
        {
            "title": "A platform",
            "stages": [],
            "choices": [],
            "cost_estimate": None,
            "status": "proposed",
        }
    ]
    untested = Assumption.objects.filter(choice__plan=plan, metric="")
    assert untested.count() == 2
    assert all(a.status == AssumptionStatus.UNTESTED for a in untested)


@pytest.mark.parametrize(
    "schedule",
    [
        {"cadence": "daily", "weekday": "sun", "time": "18:45:30", "timezone": "America/New_York"},
        {"cadence": "off", "weekday": "mon", "time": "00:00", "timezone": "UTC"},
    ],
)
def test_retest_schedule_round_trips(users, schedule):
    data = rich_file()
    data["retest_schedule"] = schedule

    plan, _ = import_plan(data)

    assert export_plan(plan)["retest_schedule"] == schedule


def test_import_records_one_activity_and_each_member_as_the_members_page_does(users):
    plan, _ = import_plan(rich_file(), actor=users["ana"])

    activity = Activity.objects.get(plan=plan, item_type="plan")
    assert activity.action == Activity.Action.IMPORTED
    assert activity.actor == users["ana"]
    assert activity.before is None
    assert activity.after["slug"] == "fy2027"
    joined = Activity.objects.filter(plan=plan, item_type="member").order_by("pk")
    assert [(a.action, a.actor, a.after) for a in joined] == [
        ("created", users["ana"], {"role": "cmo", "business_unit": ""}),
        ("created", users["ana"], {"role": "cio", "business_unit": ""}),
        ("created", users["ana"], {"role": "bu_leader", "business_unit": "Retail"}),
    ]
    assert Activity.objects.filter(plan=plan).count() == 4


# --- The management commands --------------------------------------------------------------------


def test_commands_round_trip_through_files(users, tmp_path):
    source = tmp_path / "fy2027.json"
    source.write_text(json.dumps(rich_file(), indent=2, ensure_ascii=False), encoding="utf-8")
    out = io.StringIO()

    call_command("import_plan", str(source), stdout=out)

    assert out.getvalue().startswith("Created plan fy2027 ")
    target = tmp_path / "export.json"
    call_command("export_plan", "fy2027", "--output", str(target), stderr=io.StringIO())
    text = target.read_text(encoding="utf-8")
    assert text.endswith("}\n")
    assert json.loads(text) == rich_file()
    assert text == json.dumps(rich_file(), indent=2, ensure_ascii=False) + "\n"

    out = io.StringIO()
    call_command("import_plan", str(target), stdout=out)
    assert out.getvalue().startswith("Updated plan fy2027 ")
    assert json.loads(text) == export_plan(Plan.objects.get(slug="fy2027"))


def test_export_command_writes_to_stdout(users):
    import_plan(rich_file())
    out = io.StringIO()

    call_command("export_plan", "fy2027", stdout=out)

    assert json.loads(out.getvalue()) == rich_file()
    assert out.getvalue().endswith("}\n")


def test_export_command_names_an_unknown_slug(db):
    with pytest.raises(CommandError, match="fy2099"):
        call_command("export_plan", "fy2099")


def test_import_command_reads_stdin(users):
    out = io.StringIO()

    call_command("import_plan", "-", stdin=io.StringIO(json.dumps(rich_file())), stdout=out)

    assert out.getvalue().startswith("Created plan fy2027 ")
    assert Plan.objects.filter(slug="fy2027").exists()


def test_import_command_prints_every_error_and_writes_nothing(users, tmp_path):
    data = rich_file()
    data["colour"] = "blue"
    data["members"].append({"username": "zoe", "role": "observer"})
    source = tmp_path / "bad.json"
    source.write_text(json.dumps(data), encoding="utf-8")
    err = io.StringIO()

    with pytest.raises(CommandError, match="2 errors; nothing was imported"):
        call_command("import_plan", str(source), stderr=err)

    assert 'unknown key "colour" at the top level' in err.getvalue()
    assert 'members[3]: no user "zoe"' in err.getvalue()
    assert Plan.objects.count() == 0


def test_import_command_rejects_invalid_json(users, tmp_path):
    source = tmp_path / "bad.json"
    source.write_text('{\n  "name": "FY2027",\n  "slug": fy2027\n}\n', encoding="utf-8")
    err = io.StringIO()

    with pytest.raises(CommandError):
        call_command("import_plan", str(source), stderr=err)

    assert "invalid JSON at line 3, column 11" in err.getvalue()
    assert Plan.objects.count() == 0


def test_import_command_names_a_missing_file(db, tmp_path):
    err = io.StringIO()
    with pytest.raises(CommandError):
        call_command("import_plan", str(tmp_path / "nowhere.json"), stderr=err)
    assert "nowhere.json" in err.getvalue()


# --- Updates: the database ends up equal to the file --------------------------------------------


def test_update_makes_the_database_equal_the_file(users):
    plan, _ = import_plan(rich_file())
    loyalty = StrategicChoice.objects.get(plan=plan, title=LOYALTY)
    Comment.objects.create(plan=plan, choice=loyalty, author=users["ana"], body="Keep this")
    repeat = Assumption.objects.get(choice=loyalty, statement=REPEAT)
    nps = Assumption.objects.get(choice=loyalty, statement=NPS)
    Assumption.objects.filter(pk__in=[repeat.pk, nps.pk]).update(status="holds", observed=0.4)
    data = rich_file()
    choice(data, LOYALTY)["assumptions"][0]["test"]["threshold"] = 0.35
    del choice(data, LOYALTY)["assumptions"][2]  # the untested hunch
    # "Ask" becomes "Help", everywhere the file names it.
    data["stages"][4] = "Help"
    data["event_map"]["support_ticket"] = "Help"
    choice(data, HELP_CENTRE)["stages"] = ["Help"]
    choice(data, HELP_CENTRE)["assumptions"][0]["test"]["params"] = {"stage": "Help"}
    data["bt_initiatives"][1]["stages"] = ["Use", "Help"]
    data["members"] = [m for m in data["members"] if m["username"] != "maya"]
    choice(data, HELP_CENTRE)["assumptions"][0]["owner"] = None

    updated, created = import_plan(data)

    assert not created
    assert updated.pk == plan.pk
    assert export_plan(updated) == data
    assert list(plan.stages.values_list("name", flat=True)) == data["stages"]
    assert not Assumption.objects.filter(statement=HUNCH).exists()
    assert Assumption.objects.filter(choice__plan=plan).count() == 4
    # Matched by title and statement: the same rows, so comments and history stay.
    assert StrategicChoice.objects.get(plan=plan, title=LOYALTY).pk == loyalty.pk
    assert Comment.objects.filter(choice=loyalty).exists()
    repeat.refresh_from_db()
    assert repeat.threshold == 0.35
    # Its old verdict was about another threshold; the untouched test keeps its verdict.
    assert repeat.status == AssumptionStatus.UNTESTED
    assert repeat.observed is None
    nps.refresh_from_db()
    assert nps.status == "holds"
    assert nps.observed == 0.4
    # Leaving the plan ends the membership, not the user.
    assert not Membership.objects.filter(plan=plan, user=users["maya"]).exists()
    assert get_user_model().objects.filter(username="maya").exists()
    assert EventMapping.objects.get(plan=plan, event_type="support_ticket").stage.name == "Help"


def test_update_removes_what_the_file_no_longer_has(users):
    plan, _ = import_plan(rich_file())
    data = rich_file()
    data["event_map"] = {"purchase": "Buy"}
    data["members"] = [{"username": "ana", "role": "facilitator"}]
    data["choices"] = [choice(data, LOYALTY)]
    data["choices"][0]["owner"] = None
    for assumption in data["choices"][0]["assumptions"]:
        assumption["owner"] = None
    data["choices"][0]["assumptions"][0]["test"] = None
    data["bt_initiatives"] = [data["bt_initiatives"][0]]
    del data["stages"]  # back to the six defaults
    del data["retest_schedule"]  # back to off

    updated, _ = import_plan(data)

    exported = export_plan(updated)
    assert exported["members"] == [{"username": "ana", "role": "facilitator"}]
    assert exported["event_map"] == {"purchase": "Buy"}
    assert [c["title"] for c in exported["choices"]] == [LOYALTY]
    assert exported["choices"][0]["assumptions"][0]["test"] is None
    assert exported["retest_schedule"]["cadence"] == "off"
    assert exported["retest_schedule"]["timezone"] == "UTC"
    assert StrategicChoice.objects.filter(plan=plan).count() == 1
    assert BTInitiative.objects.filter(plan=plan).count() == 1
    assert get_user_model().objects.count() == 4


def test_stage_matched_whatever_its_case_keeps_its_row(users):
    plan, _ = import_plan(rich_file())
    buy = Stage.objects.get(plan=plan, name="Buy")
    data = rich_file()
    data["stages"] = ["Discover", "Explore", "buy", "Use", "Ask", "Engage"]

    updated, _ = import_plan(data)

    buy.refresh_from_db()
    assert buy.name == "buy"
    assert export_plan(updated)["choices"][0]["stages"] == ["buy", "Engage"]
    assert export_plan(updated)["event_map"]["purchase"] == "buy"


def test_reordered_stages_and_choices_follow_the_file(users):
    import_plan(rich_file())
    data = rich_file()
    data["stages"] = list(reversed(data["stages"]))
    data["choices"] = list(reversed(data["choices"]))
    # The map is written stage by stage, then by event type.
    data["event_map"] = dict(
        sorted(data["event_map"].items(), key=lambda kv: (data["stages"].index(kv[1]), kv[0]))
    )
    for item in [*data["choices"], *data["bt_initiatives"]]:
        item["stages"] = [s for s in data["stages"] if s in item["stages"]]
    data["bt_initiatives"][1]["choices"] = [HELP_CENTRE, LOYALTY]

    updated, _ = import_plan(data)

    assert json.dumps(export_plan(updated)) == json.dumps(data)


def test_a_member_who_stays_keeps_their_own_settings(users):
    plan, _ = import_plan(rich_file())
    Membership.objects.filter(plan=plan, user=users["ana"]).update(digest_opt_out=True)
    data = rich_file()
    data["members"][0]["role"] = "facilitator"

    import_plan(data)

    membership = Membership.objects.get(plan=plan, user=users["ana"])
    assert membership.role == "facilitator"
    assert membership.digest_opt_out


def test_reimporting_the_same_file_changes_nothing(users):
    plan, _ = import_plan(rich_file())
    counts = row_counts()
    before = {model.__name__: list(model.objects.order_by("pk").values()) for model in PLAN_MODELS}

    import_plan(rich_file())
    import_plan(rich_file())

    assert row_counts() == counts
    after = {model.__name__: list(model.objects.order_by("pk").values()) for model in PLAN_MODELS}
    assert after == before  # no version bumped, no updated_at touched, no duplicates
    assert Activity.objects.filter(plan=plan).count() == 4  # the first import and its 3 members


def test_a_changed_import_bumps_versions_and_records_before_and_after(users):
    plan, _ = import_plan(rich_file())
    loyalty = StrategicChoice.objects.get(plan=plan, title=LOYALTY)
    data = rich_file()
    choice(data, LOYALTY)["status"] = "adopted"

    import_plan(data, actor=users["ana"])

    changed = StrategicChoice.objects.get(pk=loyalty.pk)
    assert changed.version == loyalty.version + 1
    assert StrategicChoice.objects.get(plan=plan, title=HELP_CENTRE).version == 1
    activity = Activity.objects.filter(plan=plan).first()
    assert activity.before["choices"][0]["status"] == "proposed"
    assert activity.after["choices"][0]["status"] == "adopted"
    # Created, three members joined, imported; then imported again.
    assert Plan.objects.get(pk=plan.pk).version == 6


# --- Bad files: every error named, nothing written ----------------------------------------------


def _set(path: str, value: Any) -> Callable[[dict], None]:
    """A change to the file at a dotted path, e.g. "choices.0.assumptions.1.importance"."""

    def change(data: dict) -> None:
        *parents, last = path.split(".")
        target: Any = data
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target[key]
        if isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value

    return change


def _add_member(data: dict) -> None:
    data["members"].append({"username": "zoe", "role": "observer"})


def _duplicate_title(data: dict) -> None:
    data["choices"][2]["title"] = LOYALTY


BAD_FILES = {
    "unknown top-level key": (_set("colour", "blue"), 'unknown key "colour" at the top level'),
    "unknown choice key": (_set("choices.0.colour", "blue"), 'unknown key "colour" at choices[0]'),
    "unknown test key": (
        _set("choices.1.assumptions.0.test.colour", 1),
        'unknown key "colour" at choices[1].assumptions[0].test',
    ),
    "unknown schedule key": (
        _set("retest_schedule.hour", 7),
        'unknown key "hour" at retest_schedule',
    ),
    "missing user": (_add_member, 'members[3]: no user "zoe"'),
    "owner not a member": (
        _set("choices.1.owner", "olga"),
        'choices[1].owner: "olga" is not a member of the plan in this file',
    ),
    "assumption owner not a member": (
        _set("choices.0.assumptions.0.owner", "zoe"),
        'choices[0].assumptions[0].owner: "zoe" is not a member',
    ),
    "unknown stage in a choice": (
        _set("choices.0.stages", ["Buy", "Checkout"]),
        'choices[0].stages[1]: "Checkout" is not a stage of this plan',
    ),
    "unknown stage in the event map": (
        _set("event_map.visit", "Browse"),
        'event_map.visit: "Browse" is not a stage of this plan',
    ),
    "unknown stage in an initiative": (
        _set("bt_initiatives.0.stages", ["Pay"]),
        'bt_initiatives[0].stages[0]: "Pay" is not a stage',
    ),
    "unknown choice in an initiative": (
        _set("bt_initiatives.0.choices", ["Nope"]),
        'bt_initiatives[0].choices[0]: "Nope" is not the title of a choice in this file',
    ),
    "bad metric": (
        _set("choices.0.assumptions.0.test.metric", "repeat"),
        'choices[0].assumptions[0].test.metric: "repeat" is not a metric; choose one of',
    ),
    "bad params": (
        _set("choices.0.assumptions.0.test.params", {"event_type": "purchase", "within_days": 0}),
        "choices[0].assumptions[0].test.params: “within_days” must be a whole number of days",
    ),
    "unknown param": (
        _set("choices.0.assumptions.0.test.params", {"event_type": "purchase", "days": 90}),
        "choices[0].assumptions[0].test.params: repeat_rate takes no parameter days",
    ),
    "stage_reach on an unknown stage": (
        _set("choices.1.assumptions.0.test.params", {"stage": "Checkout"}),
        "choices[1].assumptions[0].test.params: “Checkout” is not a stage",
    ),
    "between with one number": (
        _set("choices.0.assumptions.1.test.threshold", 20),
        'choices[0].assumptions[1].test.threshold: "between" takes [low, high]',
    ),
    "between upside down": (
        _set("choices.0.assumptions.1.test.threshold", [40, 20]),
        "choices[0].assumptions[1].test.threshold: the high threshold 20 is below the low one 40",
    ),
    ">= with two numbers": (
        _set("choices.0.assumptions.0.test.threshold", [0.2, 0.3]),
        'choices[0].assumptions[0].test.threshold: ">=" takes one number',
    ),
    "bad comparator": (
        _set("choices.0.assumptions.0.test.comparator", ">"),
        'choices[0].assumptions[0].test.comparator: ">" is not a comparator',
    ),
    "min_sample 0": (
        _set("choices.0.assumptions.0.test.min_sample", 0),
        "choices[0].assumptions[0].test.min_sample: must be a whole number at least 1",
    ),
    "window_days 0": (
        _set("choices.0.assumptions.0.test.window_days", 0),
        "choices[0].assumptions[0].test.window_days: must be a whole number at least 1",
    ),
    "importance 7": (
        _set("choices.0.assumptions.0.importance", 7),
        "choices[0].assumptions[0].importance: must be a whole number from 1 to 5, "
        "not the number 7",
    ),
    "evidence as text": (
        _set("choices.0.assumptions.0.evidence", "high"),
        "choices[0].assumptions[0].evidence: must be a whole number from 1 to 5",
    ),
    "duplicate choice titles": (
        _duplicate_title,
        f'choices[2].title: "{LOYALTY}" is already at choices[0].title',
    ),
    "duplicate statements": (
        _set("choices.0.assumptions.1.statement", REPEAT),
        "choices[0].assumptions[1].statement: ",
    ),
    "duplicate stage names": (
        _set("stages", ["Discover", "Explore", "Buy", "buy", "Use", "Ask", "Engage"]),
        'stages[3]: "buy" is already at stages[2]',
    ),
    "bad role": (_set("members.0.role", "boss"), 'members[0].role: "boss" is not a role'),
    "BU leader without a business unit": (
        _set("members.2.business_unit", ""),
        "members[2].business_unit: a BU leader names the business unit",
    ),
    "bad status": (_set("choices.0.status", "maybe"), 'choices[0].status: "maybe" is not a status'),
    "bad horizon": (
        _set("choices.0.horizon", "soon"),
        'choices[0].horizon: "soon" is not a horizon',
    ),
    "negative cost": (
        _set("bt_initiatives.0.cost_estimate", -1),
        "bt_initiatives[0].cost_estimate: must be an amount ≥ 0",
    ),
    "cost as text": (
        _set("bt_initiatives.0.cost_estimate", "lots"),
        "bt_initiatives[0].cost_estimate: must be an amount ≥ 0",
    ),
    "bad time zone": (
        _set("retest_schedule.timezone", "Mars/Olympus"),
        "retest_schedule.timezone: “Mars/Olympus” is not a time zone",
    ),
    "bad time": (_set("retest_schedule.time", "7am"), 'retest_schedule.time: "7am" is not a time'),
    "bad weekday": (_set("retest_schedule.weekday", "monday"), "retest_schedule.weekday: "),
    "blank title": (_set("choices.0.title", "  "), "choices[0].title: must not be blank"),
    "missing name": (_set("name", None), "name: is missing"),
    "choices not a list": (_set("choices", {"title": "x"}), "choices: must be a list"),
    "assumption not an object": (
        _set("choices.0.assumptions.0", "x"),
        "choices[0].assumptions[0]: must be an object",
    ),
}


@pytest.mark.parametrize("existing", [False, True], ids=["new plan", "existing plan"])
@pytest.mark.parametrize("case", list(BAD_FILES))
def test_a_bad_file_is_told_precisely_and_writes_nothing(users, case, existing):
    if existing:
        plan, _ = import_plan(rich_file())
        before = export_plan(plan)
    change, message = BAD_FILES[case]
    data = rich_file()
    change(data)
    counts = row_counts()

    with pytest.raises(PlanFileError) as raised:
        import_plan(data)

    assert any(message in error for error in raised.value.errors), raised.value.errors
    assert row_counts() == counts
    if existing:
        assert export_plan(Plan.objects.get(slug="fy2027")) == before
    else:
        assert not Plan.objects.exists()


def test_every_error_is_reported_at_once(users):
    data = rich_file()
    data["colour"] = "blue"
    choice(data, LOYALTY)["assumptions"][0]["importance"] = 7
    choice(data, LOYALTY)["assumptions"][1]["test"]["threshold"] = 20
    data["members"].append({"username": "zoe", "role": "observer"})

    with pytest.raises(PlanFileError) as raised:
        import_plan(data)

    assert len(raised.value.errors) == 4
    assert not Plan.objects.exists()


def test_a_failed_update_leaves_the_plan_as_it_was(users):
    plan, _ = import_plan(rich_file())
    before = export_plan(plan)
    data = rich_file()
    data["stages"][4] = "Help"  # a valid change, but the file has an error further down
    choice(data, HELP_CENTRE)["stages"] = ["Help"]
    choice(data, LOYALTY)["assumptions"][0]["importance"] = 7

    with pytest.raises(PlanFileError):
        import_plan(data)

    assert export_plan(plan) == before
    assert Stage.objects.filter(plan=plan, name="Ask").exists()


def _leaf_paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    if isinstance(value, dict):
        return [p for key, item in value.items() for p in _leaf_paths(item, (*prefix, key))]
    if isinstance(value, list) and value:
        return [p for index, item in enumerate(value) for p in _leaf_paths(item, (*prefix, index))]
    return [prefix]


@pytest.mark.parametrize("odd", [[], {}, True, "x" * 500], ids=["list", "object", "true", "long"])
def test_any_odd_value_anywhere_is_an_error_never_a_crash(users, odd):
    """Whatever a hand-edited file holds, import_plan answers with PlanFileError or imports it."""
    base = rich_file()
    for path in _leaf_paths(base):
        data = copy.deepcopy(base)
        target: Any = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = odd
        try:
            import_plan(data)
        except PlanFileError as error:
            assert error.errors


def test_the_top_level_must_be_an_object(db):
    with pytest.raises(PlanFileError, match="must be an object"):
        import_plan([])  # type: ignore[arg-type]


# --- Reading files ------------------------------------------------------------------------------


def test_load_plan_file_reads_a_path_or_text(tmp_path):
    path = tmp_path / "plan.json"
    path.write_text(json.dumps({"name": "Plan"}), encoding="utf-8-sig")

    assert load_plan_file(path) == {"name": "Plan"}
    assert load_plan_file(str(path)) == {"name": "Plan"}
    assert load_plan_file('{"name": "Plan"}') == {"name": "Plan"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{\n  "name": "Plan",\n}', "invalid JSON at line 3, column 1"),
        ('{"threshold": NaN}', "invalid JSON: NaN is not a JSON value"),
        ("[1, 2]", "the top level must be an object {…}, not a list"),
        ("", "invalid JSON at line 1, column 1"),
    ],
)
def test_load_plan_file_tells_what_is_wrong(text, message):
    with pytest.raises(PlanFileError) as raised:
        load_plan_file(text)

    assert len(raised.value.errors) == 1
    assert message in raised.value.errors[0]


# --- Queries ------------------------------------------------------------------------------------


def _big_file(size: int) -> dict[str, Any]:
    data = rich_file()
    data["slug"] = f"plan-{size}"
    data["choices"] = [
        {**copy.deepcopy(item), "title": f"{item['title']} #{n}"}
        for n in range(size)
        for item in rich_file()["choices"]
    ]
    data["bt_initiatives"] = [
        {
            **copy.deepcopy(item),
            "title": f"{item['title']} #{n}",
            "choices": [f"{title} #{n}" for title in item["choices"]],
        }
        for n in range(size)
        for item in rich_file()["bt_initiatives"]
    ]
    return data


def test_export_queries_do_not_grow_with_the_plan(users, django_assert_max_num_queries):
    small, _ = import_plan(_big_file(1))
    big, _ = import_plan(_big_file(10))

    with CaptureQueriesContext(connection) as small_queries:
        export_plan(small)
    with django_assert_max_num_queries(len(small_queries)):
        exported = export_plan(big)

    assert len(exported["choices"]) == 30
    assert len(small_queries) == 10  # the plan and its nine relations, one query each


# Queries per copy of the rich file's items (3 choices, 5 assumptions, 3 BT initiatives) in a
# new plan, and in a re-import that changes nothing. Each item is checked by its form and
# written by `write_item`, and that costs queries; nothing is read once per item that can be
# read once per import (the stored assumptions, the stored items' stages and choices, owners
# already looked up, a choice's plan). A regression here was 5.8 s → 42.6 s for the largest
# plan file (`python -m bench.imports --planfile` times it).
QUERIES_PER_COPY_NEW = 91
QUERIES_PER_COPY_UNCHANGED = 42


def test_import_queries_grow_with_the_items_alone(users):
    counts = []
    for size in (1, 2):
        with CaptureQueriesContext(connection) as created:
            import_plan(_big_file(size))
        with CaptureQueriesContext(connection) as unchanged:
            import_plan(_big_file(size))
        counts.append((len(created), len(unchanged)))

    assert counts[1][0] - counts[0][0] <= QUERIES_PER_COPY_NEW
    assert counts[1][1] - counts[0][1] <= QUERIES_PER_COPY_UNCHANGED
