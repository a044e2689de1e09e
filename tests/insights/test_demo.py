"""`manage.py load_demo`: the Northwind demo plan, its users and its events."""

from __future__ import annotations

import csv
import datetime as dt
import io
import itertools
import json
import re
from collections import Counter

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db.models import Max, Min
from django.test import Client

from insights import demo
from insights.models import EVENT_FIELDS, Event, Import
from insights.services.imports import create_import, run_import
from lifecycle.models import DEFAULT_STAGES, EventMapping
from planning.models import Assumption, Comparator, Metric, Plan, Role
from planning.planfile import export_plan
from planning.services import create_plan

SMALL = 150  # customers: a few thousand events, enough to check the loading quickly
# The verdicts of the demo's 31 tests as of its latest event (see the plan's statements).
EXPECTED_STATUSES = {"holds": 13, "at_risk": 7, "broken": 8, "insufficient_data": 3}


def _tests(plan_file: dict) -> list[dict]:
    return [
        assumption["test"]
        for choice in plan_file["choices"]
        for assumption in choice["assumptions"]
        if assumption["test"]
    ]


def _counts() -> dict[str, int]:
    return {
        "users": get_user_model().objects.count(),
        "plans": Plan.objects.count(),
        "choices": Plan.objects.get(slug=demo.DEMO_SLUG).choices.count(),
        "assumptions": Assumption.objects.count(),
        "events": Event.objects.count(),
        "imports": Import.objects.count(),
    }


# --- The plan file ----------------------------------------------------------------------------


def test_plan_has_choices_in_every_stage_and_every_role():
    plan_file = demo.DEMO_PLAN
    assert plan_file["stages"] == DEFAULT_STAGES
    assert len(plan_file["choices"]) >= 10
    assert {stage for choice in plan_file["choices"] for stage in choice["stages"]} == set(
        DEFAULT_STAGES
    )
    assert {member["role"] for member in plan_file["members"]} == set(Role.values)
    units = {m["business_unit"] for m in plan_file["members"] if m["role"] == Role.BU_LEADER}
    assert len(units) == 2
    assert {choice["status"] for choice in plan_file["choices"]} == {
        "proposed",
        "adopted",
        "rejected",
        "retired",
    }
    assert {choice["horizon"] for choice in plan_file["choices"]} == {"now", "next", "later"}
    assert len(plan_file["bt_initiatives"]) >= 4
    assert plan_file["retest_schedule"]["cadence"] == "weekly"


def test_plan_tests_cover_every_metric_and_comparator():
    assumptions = [a for choice in demo.DEMO_PLAN["choices"] for a in choice["assumptions"]]
    tests = _tests(demo.DEMO_PLAN)
    assert len(assumptions) >= 25
    assert 2 <= len(assumptions) - len(tests) <= 3  # tracked by hand
    assert {test["metric"] for test in tests} == set(Metric.values)
    assert {test["comparator"] for test in tests} == set(Comparator.values)
    assert any(test["segment"] for test in tests)
    assert any(test["channel"] for test in tests)
    assert any(test["window_days"] for test in tests)
    assert any(test["min_sample"] != 30 for test in tests)


def test_every_generated_event_type_is_in_the_event_map():
    types = {event.event_type for event in demo.generate_events(customers=SMALL)}
    assert types == set(demo.DEMO_PLAN["event_map"])
    assert all(event_type == event_type.lower() for event_type in types)
    assert set(demo.DEMO_PLAN["event_map"].values()) == set(DEFAULT_STAGES)


# --- The events -------------------------------------------------------------------------------


def test_generator_is_deterministic():
    first = list(itertools.islice(demo.generate_events(), 3000))
    again = list(itertools.islice(demo.generate_events(), 3000))
    other = list(itertools.islice(demo.generate_events(seed=1), 3000))
    assert first == again
    assert first != other
    assert [event.event_id for event in first[:2]] == ["nw-000001", "nw-000002"]


def test_generated_events_look_like_customer_data():
    events = list(demo.generate_events(customers=400))
    assert all(demo.START <= event.occurred_at <= demo.END for event in events)
    assert len({event.event_id for event in events}) == len(events)
    surveys = [event.value for event in events if event.event_type == "survey"]
    assert surveys and all(0 <= score <= 10 for score in surveys)
    assert all(event.value > 0 for event in events if event.event_type == "purchase")
    assert {event.channel for event in events} == {"web", "store", "app", "phone"}
    assert {"loyal", "value", "premium", "prospect"} <= {event.segment for event in events}
    # Several events by one customer on one day, and customers new in the last weeks.
    days = [(event.customer_id, event.occurred_at.date()) for event in events]
    assert len(set(days)) < len(days)
    firsts: dict[str, dt.datetime] = {}
    for event in events:
        firsts.setdefault(event.customer_id, event.occurred_at)
    assert any(first >= demo.END - dt.timedelta(days=21) for first in firsts.values())


def test_the_last_quarter_changes_customer_behaviour():
    """Tickets rise and scores fall after the shift: what breaks some of the assumptions."""
    events = list(demo.generate_events(customers=3000))
    before = [e for e in events if demo.SHIFT - dt.timedelta(days=92) <= e.occurred_at < demo.SHIFT]
    after = [e for e in events if e.occurred_at >= demo.SHIFT]

    def share(rows, event_type):
        return sum(1 for e in rows if e.event_type == event_type) / len(rows)

    def mean_score(rows):
        scores = [e.value for e in rows if e.event_type == "survey"]
        return sum(scores) / len(scores)

    assert share(after, "support_ticket") > 1.5 * share(before, "support_ticket")
    assert mean_score(after) < mean_score(before)
    assert share(after, "purchase") < share(before, "purchase")


# --- Loading ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_load_demo_creates_users_plan_and_events():
    result = demo.load_demo(customers=SMALL, published_password=True)

    assert result.created
    plan = result.plan
    users = get_user_model().objects.filter(memberships__plan=plan)
    assert users.count() == 6
    assert all(user.first_name and user.last_name for user in users)
    assert all(user.email == f"{user.username}@northwind.example" for user in users)
    assert all(user.check_password(demo.DEMO_PASSWORD) for user in users)
    admin = get_user_model().objects.get(username="admin")
    assert admin.is_staff and admin.is_superuser and admin.check_password(demo.DEMO_PASSWORD)
    assert not plan.memberships.filter(user=admin).exists()
    assert set(plan.memberships.values_list("role", flat=True)) == set(Role.values)
    assert {stage.name for choice in plan.choices.all() for stage in choice.stages.all()} == set(
        DEFAULT_STAGES
    )
    tested = Assumption.objects.filter(choice__plan=plan).exclude(metric="")
    assert set(tested.values_list("metric", flat=True)) == set(Metric.values)
    assert set(tested.values_list("comparator", flat=True)) == set(Comparator.values)
    assert plan.retest_cadence == "weekly"

    events = Event.objects.filter(plan=plan)
    assert events.count() == result.events == len(list(demo.generate_events(customers=SMALL)))
    assert set(events.order_by().values_list("event_type", flat=True).distinct()) <= set(
        EventMapping.objects.filter(plan=plan).values_list("event_type", flat=True)
    )
    first = events.get(event_id="nw-000001")
    assert first.dedupe_key == Event.identity("nw-000001", {}, 0)


@pytest.mark.django_db
def test_without_debug_every_new_login_gets_a_random_password_printed_once(settings):
    """A production site (DEBUG off) must not get an `admin` with the published password."""
    settings.DEBUG = False
    out = io.StringIO()

    call_command("load_demo", "--customers", "1", stdout=out)

    text = out.getvalue()
    assert demo.DEMO_PASSWORD not in text
    assert "DEBUG is off, so the published demo password is not used" in text
    printed = dict(re.findall(r"^  (\w+) .*  (\S+)$", text, re.MULTILINE))
    usernames = [username for username, *_ in demo.DEMO_USERS] + ["admin"]
    assert list(printed) == usernames
    assert len(set(printed.values())) == len(usernames)
    for user in get_user_model().objects.filter(username__in=usernames):
        assert not user.check_password(demo.DEMO_PASSWORD)
        assert user.check_password(printed[user.username])
    # The printed password signs the superuser in to the back-office.
    client = Client()
    response = client.post("/admin/login/", {"username": "admin", "password": printed["admin"]})
    assert response.status_code == 302
    assert client.get("/admin/").status_code == 200

    again = io.StringIO()
    call_command("load_demo", "--customers", "1", stdout=again)

    assert not any(password in again.getvalue() for password in printed.values())
    assert "Users that were already there keep the password they had." in again.getvalue()


@pytest.mark.django_db
def test_with_debug_on_the_demo_logins_use_the_published_password(settings):
    settings.DEBUG = True
    out = io.StringIO()

    call_command("load_demo", "--customers", "1", stdout=out)

    assert f"Demo logins, all with the password {demo.DEMO_PASSWORD}:" in out.getvalue()
    # No password of its own on any line.
    assert re.search(r"^  admin +Staff: the back-office at /admin/$", out.getvalue(), re.MULTILINE)
    admin = get_user_model().objects.get(username="admin")
    assert admin.is_superuser and admin.check_password(demo.DEMO_PASSWORD)


@pytest.mark.django_db
def test_the_plan_is_exactly_its_plan_file():
    plan = demo.load_demo(customers=1).plan

    exported = export_plan(plan)

    def by_name(data):
        return {**data, "members": sorted(data["members"], key=lambda m: m["username"])}

    assert by_name(exported) == by_name(demo.DEMO_PLAN)


@pytest.mark.django_db
def test_the_demo_plan_is_a_plan_file_the_import_command_reads():
    """The demo ships its plan as a plan file, not as Python: `manage.py import_plan` makes the
    same plan from it as `load_demo` does."""
    for username, *_ in demo.DEMO_USERS:
        get_user_model().objects.create_user(username)
    out = io.StringIO()

    call_command("import_plan", str(demo.DEMO_PLAN_FILE), stdout=out)

    assert demo.DEMO_PLAN_FILE.suffix == ".json"
    assert out.getvalue().startswith(f"Created plan {demo.DEMO_SLUG} ")
    imported = export_plan(Plan.objects.get(slug=demo.DEMO_SLUG))
    assert json.loads(demo.DEMO_PLAN_FILE.read_text(encoding="utf-8")) == demo.DEMO_PLAN
    assert sorted(imported["members"], key=str) == sorted(demo.DEMO_PLAN["members"], key=str)
    assert {**imported, "members": []} == {**demo.DEMO_PLAN, "members": []}


@pytest.mark.django_db
def test_the_events_are_kept_as_an_import_with_their_file():
    plan = demo.load_demo(customers=SMALL).plan

    record = Import.objects.get(plan=plan)
    assert record.status == Import.Status.SUCCEEDED
    assert record.original_name == demo.DEMO_FILE_NAME
    assert record.rows_read == record.rows_imported == plan.events.count()
    assert record.events.count() == plan.events.count()
    with record.file.open("rb") as stored:
        content = stored.read()
    assert record.size_bytes == len(content)
    rows = list(csv.DictReader(io.StringIO(content.decode())))
    assert len(rows) == plan.events.count()
    assert list(rows[0]) == [
        "customer_id",
        "occurred_at",
        "event_type",
        "value",
        "segment",
        "channel",
        "event_id",
    ]
    event = plan.events.get(event_id=rows[0]["event_id"])
    assert dt.datetime.fromisoformat(rows[0]["occurred_at"]) == event.occurred_at
    assert rows[0]["customer_id"] == event.customer_id


STORED_FIELDS = [*EVENT_FIELDS, "attributes", "dedupe_key"]


@pytest.mark.django_db
def test_the_events_are_what_importing_their_file_gives():
    """The demo stores its events through the import's own row rules and storage: importing
    its kept file into another plan gives the same events, identities and all."""
    plan = demo.load_demo(customers=SMALL).plan
    kept = Import.objects.get(plan=plan)
    other = create_plan("Northwind again", "northwind-again")
    with kept.file.open("rb") as stored:
        again = create_import(other, stored, "again.csv")
    assert run_import(again.pk).rows_imported == kept.rows_imported  # type: ignore[union-attr]

    def stored_events(of: Plan) -> list[tuple]:
        return sorted(Event.objects.filter(plan=of).values_list(*STORED_FIELDS))

    assert stored_events(plan) == stored_events(other)
    assert len(stored_events(plan)) == kept.rows_imported > 1000


@pytest.mark.django_db
def test_loading_twice_adds_nothing():
    demo.load_demo(customers=SMALL)
    counts = _counts()

    result = demo.load_demo(customers=SMALL)

    assert not result.created
    assert not any(login.created for login in result.logins)
    assert _counts() == counts


@pytest.mark.django_db
def test_existing_users_keep_their_password():
    get_user_model().objects.create_user("elena", password="her-own-secret-2026")

    demo.load_demo(customers=1)

    assert get_user_model().objects.get(username="elena").check_password("her-own-secret-2026")


@pytest.mark.django_db
def test_reset_deletes_and_loads_the_demo_again(settings, django_capture_on_commit_callbacks):
    old = demo.load_demo(customers=SMALL).plan
    counts = _counts()

    with django_capture_on_commit_callbacks(execute=True):
        result = demo.load_demo(reset=True, customers=SMALL)

    assert result.created
    assert result.plan.pk != old.pk
    assert not Plan.objects.filter(pk=old.pk).exists()
    assert _counts() == counts
    # The old events file went with its plan: the one file left is the new import's.
    stored = list((settings.MEDIA_ROOT / "imports" / demo.DEMO_SLUG).iterdir())
    new_file = Import.objects.get(plan=result.plan).file
    assert [path.name for path in stored] == [new_file.name.rsplit("/", 1)[-1]]


@pytest.mark.django_db
def test_a_failed_load_leaves_nothing_behind(monkeypatch, settings):
    def broken_events(customers, seed):
        yield from demo.generate_events(customers, seed)
        raise RuntimeError("the simulation broke")

    monkeypatch.setattr(demo, "generate_events", broken_events)

    with pytest.raises(RuntimeError):
        demo.load_demo(customers=SMALL)

    assert not Plan.objects.exists()
    assert not Event.objects.exists()
    folder = settings.MEDIA_ROOT / "imports" / demo.DEMO_SLUG
    assert not folder.exists() or not list(folder.iterdir())


@pytest.mark.django_db
def test_a_failed_reset_keeps_the_old_demo(monkeypatch, django_capture_on_commit_callbacks):
    old = demo.load_demo(customers=SMALL).plan
    old_file = Import.objects.get(plan=old).file
    counts = _counts()

    def broken_events(customers, seed):
        yield from demo.generate_events(customers, seed)
        raise RuntimeError("the simulation broke")

    monkeypatch.setattr(demo, "generate_events", broken_events)
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError):
        demo.load_demo(reset=True, customers=SMALL)

    assert Plan.objects.get(slug=demo.DEMO_SLUG).pk == old.pk
    assert _counts() == counts
    assert old_file.storage.exists(old_file.name)
    assert list(old_file.storage.listdir(f"imports/{demo.DEMO_SLUG}")[1]) == [
        old_file.name.rsplit("/", 1)[-1]
    ]


# --- The command, for real --------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.slow
def test_load_demo_command_for_real(settings):
    """The real thing: 10,000 customers, 150,000 events. The slow test of this file (~20 s)."""
    settings.DEBUG = True  # as `make run` loads it
    out = io.StringIO()

    call_command("load_demo", stdout=out)

    plan = Plan.objects.get(slug=demo.DEMO_SLUG)
    events = Event.objects.filter(plan=plan)
    assert events.count() >= 100_000
    span = events.aggregate(first=Min("occurred_at"), last=Max("occurred_at"))
    assert span["first"].date() == dt.date(2025, 5, 1)
    assert span["last"].date() == dt.date(2026, 10, 31)
    assert events.order_by().values("customer_id").distinct().count() >= 8000
    mapped = set(EventMapping.objects.filter(plan=plan).values_list("event_type", flat=True))
    # order_by(): Event's default ordering would otherwise be part of the DISTINCT.
    assert set(events.order_by().values_list("event_type", flat=True).distinct()) == mapped
    assert plan.choices.count() >= 10
    assert Assumption.objects.filter(choice__plan=plan).count() >= 25
    text = out.getvalue()
    assert demo.DEMO_PASSWORD in text
    assert "http://127.0.0.1:8000/" in text
    for username, *_ in demo.DEMO_USERS:
        assert f"  {username} " in text
    assert "  admin " in text
    counts = _counts()

    again = io.StringIO()
    call_command("load_demo", stdout=again)

    assert _counts() == counts
    assert "already there" in again.getvalue()

    # Re-tested as of the latest event, the demo tells a story: every verdict but an error.
    retest = io.StringIO()
    call_command("retest", demo.DEMO_SLUG, "--json", stdout=retest)
    runs = json.loads(retest.getvalue())
    assert Counter(run["status"] for run in runs) == EXPECTED_STATUSES
    assert {run["as_of"] for run in runs} == {span["last"].isoformat()}
