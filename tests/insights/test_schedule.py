"""The re-test schedule: when a plan's next re-test is, and the beat that starts the due ones."""

from __future__ import annotations

import datetime as dt
import threading
import time
import zoneinfo

import pytest
import time_machine
from django.db import OperationalError, connection, connections
from django.utils.timezone import now as dj_now

from insights.models import AssumptionRun, PlanRetest
from insights.services import retests
from insights.services.retests import dispatch_due_retests, run_plan_retest, start_plan_retest
from planning.models import Plan
from planning.services import create_plan

from .retest_data import seed_plan

pytestmark = pytest.mark.django_db

UTC = dt.UTC
PARIS = zoneinfo.ZoneInfo("Europe/Paris")
SEVEN = dt.time(7, 0)


def utc(*parts: int) -> dt.datetime:
    return dt.datetime(*parts, tzinfo=UTC)


def schedule(
    cadence: str, *, weekday: int = 0, at: dt.time = SEVEN, zone: str = "Europe/Paris"
) -> Plan:
    """An unsaved plan with this schedule: next_retest_after needs no database."""
    return Plan(
        name="Plan",
        slug="plan",
        retest_cadence=cadence,
        retest_weekday=weekday,
        retest_time=at,
        retest_timezone=zone,
    )


# --- Plan.next_retest_after ---------------------------------------------------------------------


def test_off_has_no_next_retest():
    assert schedule("off").next_retest_after(utc(2026, 3, 10, 5, 0)) is None


def test_daily_is_the_next_seven_oclock_in_the_plans_zone():
    daily = schedule("daily")
    # 10 March: Paris is UTC+1, 07:00 there is 06:00 UTC.
    assert daily.next_retest_after(utc(2026, 3, 10, 5, 59, 59)) == utc(2026, 3, 10, 6, 0)
    assert daily.next_retest_after(utc(2026, 3, 10, 6, 0)) == utc(
        2026, 3, 11, 6, 0
    )  # strictly after
    assert daily.next_retest_after(utc(2026, 3, 10, 6, 0, 0, 1)) == utc(2026, 3, 11, 6, 0)
    # The same moment given in another zone is the same moment.
    tokyo = utc(2026, 3, 10, 5, 0).astimezone(zoneinfo.ZoneInfo("Asia/Tokyo"))
    assert daily.next_retest_after(tokyo) == utc(2026, 3, 10, 6, 0)


def test_weekly_is_the_next_such_weekday():
    monday = schedule("weekly", weekday=0)
    # Wednesday 11 March → Monday 16 March.
    assert monday.next_retest_after(utc(2026, 3, 11, 12, 0)) == utc(2026, 3, 16, 6, 0)
    assert monday.next_retest_after(utc(2026, 3, 16, 5, 59)) == utc(2026, 3, 16, 6, 0)
    assert monday.next_retest_after(utc(2026, 3, 16, 6, 0)) == utc(2026, 3, 23, 6, 0)
    sunday = schedule("weekly", weekday=6, at=dt.time(18, 30), zone="UTC")
    assert sunday.next_retest_after(utc(2026, 3, 15, 18, 29)) == utc(2026, 3, 15, 18, 30)


def test_the_weekday_is_the_plans_not_utcs():
    # Monday 07:00 in Tokyo is Sunday 22:00 UTC.
    plan = schedule("weekly", weekday=0, zone="Asia/Tokyo")
    assert plan.next_retest_after(utc(2026, 6, 7, 21, 0)) == utc(2026, 6, 7, 22, 0)
    assert plan.next_retest_after(utc(2026, 6, 7, 22, 0)) == utc(2026, 6, 14, 22, 0)


def test_seven_oclock_paris_stays_seven_oclock_across_both_dst_changes():
    daily = schedule("daily")
    # Sunday 29 March 2026, 02:00 → 03:00: 07:00 is 06:00 UTC the day before, 05:00 UTC after.
    assert daily.next_retest_after(utc(2026, 3, 28, 6, 0)) == utc(2026, 3, 29, 5, 0)
    assert daily.next_retest_after(utc(2026, 3, 29, 5, 0)) == utc(2026, 3, 30, 5, 0)
    # Sunday 25 October 2026, 03:00 → 02:00: back to 06:00 UTC.
    assert daily.next_retest_after(utc(2026, 10, 24, 5, 0)) == utc(2026, 10, 25, 6, 0)
    weekly = schedule("weekly", weekday=0)
    assert weekly.next_retest_after(utc(2026, 3, 23, 6, 0)) == utc(2026, 3, 30, 5, 0)
    assert weekly.next_retest_after(utc(2026, 10, 19, 5, 0)) == utc(2026, 10, 26, 6, 0)


@pytest.mark.parametrize("start", [utc(2026, 3, 25), utc(2026, 10, 21)], ids=["spring", "autumn"])
def test_every_moment_around_a_dst_change_gets_the_very_next_slot(start):
    daily = schedule("daily")
    for step in range(7 * 24 * 4):  # every 15 minutes for a week
        moment = start + dt.timedelta(minutes=15 * step) + dt.timedelta(seconds=7)
        slot = daily.next_retest_after(moment)
        local = slot.astimezone(PARIS)
        assert slot > moment
        assert (local.hour, local.minute) == (7, 0)
        # No slot skipped: the previous 07:00 in Paris is not after the moment.
        previous_day = local.date() - dt.timedelta(days=1)
        assert dt.datetime.combine(previous_day, SEVEN, tzinfo=PARIS) <= moment


def test_a_slot_in_the_repeated_autumn_hour_is_still_after_the_moment():
    plan = schedule("daily", at=dt.time(2, 30))
    moment = utc(2026, 10, 25, 1, 15)  # 02:15 Paris, the second time round (CET)
    assert plan.next_retest_after(moment) > moment


# --- Plan.save ----------------------------------------------------------------------------------


def test_save_follows_the_schedule():
    with time_machine.travel(utc(2026, 3, 11, 12, 0), tick=False):
        plan = create_plan(
            "Plan",
            "plan",
            retest_cadence="weekly",
            retest_weekday=0,
            retest_timezone="Europe/Paris",
        )
        assert plan.next_retest_at == utc(2026, 3, 16, 6, 0)
        plan.retest_cadence = "daily"
        plan.save()
        plan.refresh_from_db()
        assert plan.next_retest_at == utc(2026, 3, 12, 6, 0)
        plan.retest_cadence = "off"
        plan.save()
        plan.refresh_from_db()
        assert plan.next_retest_at is None


def test_save_keeps_a_slot_that_is_already_due():
    with time_machine.travel(utc(2026, 3, 11, 12, 0), tick=False):
        plan = create_plan("Plan", "plan", retest_cadence="weekly", retest_weekday=0)
    with time_machine.travel(utc(2026, 3, 16, 7, 0, 30), tick=False):  # due 30 s ago, no beat yet
        plan.name = "Renamed"
        plan.retest_cadence = "daily"
        plan.save()
    plan.refresh_from_db()
    assert plan.next_retest_at == utc(2026, 3, 16, 7, 0)


# --- dispatch_due_retests -----------------------------------------------------------------------


def test_dispatch_starts_each_due_plan_once_and_moves_it_to_its_next_slot():
    with time_machine.travel(utc(2026, 3, 15, 12, 0), tick=False):  # a Sunday
        weekly = create_plan(
            "Weekly",
            "weekly",
            retest_cadence="weekly",
            retest_weekday=0,
            retest_timezone="Europe/Paris",
        )
        daily = create_plan("Daily", "daily", retest_cadence="daily")
        later = create_plan("Wednesdays", "later", retest_cadence="weekly", retest_weekday=2)
        off = create_plan("Off", "off")
        # However it got there, a past slot on a plan that is off starts nothing.
        Plan.objects.filter(pk=off.pk).update(next_retest_at=utc(2026, 3, 1))
    with time_machine.travel(utc(2026, 3, 16, 7, 0, 20), tick=False):
        started = dispatch_due_retests()
    assert sorted((r.plan.slug, r.scheduled_for, r.trigger, r.status) for r in started) == [
        ("daily", utc(2026, 3, 16, 7, 0), "scheduled", "pending"),
        ("weekly", utc(2026, 3, 16, 6, 0), "scheduled", "pending"),
    ]
    assert dict(Plan.objects.values_list("slug", "next_retest_at")) == {
        "weekly": utc(2026, 3, 23, 6, 0),
        "daily": utc(2026, 3, 17, 7, 0),
        "later": utc(2026, 3, 18, 7, 0),
        "off": utc(2026, 3, 1),
    }
    # The next beat, a minute later: nothing more.
    with time_machine.travel(utc(2026, 3, 16, 7, 1, 20), tick=False):
        assert dispatch_due_retests() == []
    assert PlanRetest.objects.count() == 2
    assert not PlanRetest.objects.filter(plan__in=[later, off]).exists()
    assert {daily.pk, weekly.pk} == set(PlanRetest.objects.values_list("plan_id", flat=True))


def test_a_plan_overdue_for_days_is_re_tested_once_then_waits_for_its_next_slot():
    with time_machine.travel(utc(2026, 3, 10, 12, 0), tick=False):
        create_plan("Daily", "daily", retest_cadence="daily")
    with time_machine.travel(utc(2026, 3, 14, 9, 0), tick=False):  # the beat was down for 3 days
        started = dispatch_due_retests()
        assert dispatch_due_retests() == []
    assert [r.scheduled_for for r in started] == [utc(2026, 3, 11, 7, 0)]
    assert Plan.objects.get().next_retest_at == utc(2026, 3, 15, 7, 0)


@pytest.mark.django_db(transaction=True)
def test_two_beats_at_the_same_moment_start_each_due_plan_once():
    if connection.vendor != "postgresql":
        pytest.skip("row locks (SKIP LOCKED) are PostgreSQL's; SQLite serialises writers")
    with time_machine.travel(utc(2026, 3, 10, 12, 0), tick=False):
        plans = [create_plan(f"Plan {i}", f"plan-{i}", retest_cadence="daily") for i in range(30)]
    now = utc(2026, 3, 11, 7, 0, 5)
    barrier = threading.Barrier(2)
    results: list[list[PlanRetest]] = []
    errors: list[BaseException] = []

    def beat() -> None:
        try:
            barrier.wait()
            results.append(dispatch_due_retests(now))
        except BaseException as error:  # reported by the main thread
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=beat) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    started = [r.plan_id for batch in results for r in batch]
    assert sorted(started) == sorted(p.pk for p in plans)
    assert PlanRetest.objects.count() == 30
    assert set(Plan.objects.values_list("next_retest_at", flat=True)) == {utc(2026, 3, 12, 7, 0)}


# --- run_plan_retest ----------------------------------------------------------------------------


def test_a_plan_retest_is_carried_out_once(plan):
    seeded = seed_plan(plan)
    retest = start_plan_retest(plan)
    done = run_plan_retest(retest.pk)
    assert done is not None and done.status == "done" and done.finished_at is not None
    assert run_plan_retest(retest.pk) is None
    runs = AssumptionRun.objects.filter(retest=retest)
    assert sorted(runs.values_list("assumption_id", flat=True)) == sorted(
        a.pk for a in seeded.tested
    )
    assert {run.as_of for run in runs} == {dt.datetime(2026, 3, 1, 12, 0, tzinfo=UTC)}


def test_a_database_hiccup_hands_the_retest_back_and_the_retry_finishes_it(plan, monkeypatch):
    seeded = seed_plan(plan)
    retest = start_plan_retest(plan, trigger="scheduled")
    real = retests.retest_assumption
    calls = []

    def flaky(assumption, **kwargs):
        calls.append(assumption.pk)
        if len(calls) == 2:
            raise OperationalError("server closed the connection unexpectedly")
        return real(assumption, **kwargs)

    monkeypatch.setattr(retests, "retest_assumption", flaky)
    with pytest.raises(OperationalError):
        run_plan_retest(retest.pk)
    retest.refresh_from_db()
    assert retest.status == "pending"  # the task's retry can claim it again
    assert retest.runs.count() == 1
    assert run_plan_retest(retest.pk).status == "done"
    # Each assumption tested once in this re-test, all as of the same moment.
    runs = AssumptionRun.objects.filter(retest=retest)
    assert sorted(runs.values_list("assumption_id", flat=True)) == sorted(
        a.pk for a in seeded.tested
    )
    assert runs.values("as_of").distinct().count() == 1


def test_a_bug_marks_the_retest_failed_so_its_page_stops_waiting(plan, monkeypatch):
    seed_plan(plan)
    retest = start_plan_retest(plan)

    def broken(assumption, **kwargs):
        raise ValueError("a bug")

    monkeypatch.setattr(retests, "retest_assumption", broken)
    with pytest.raises(ValueError):
        run_plan_retest(retest.pk)
    retest.refresh_from_db()
    assert retest.status == "failed" and retest.finished_at is not None


def test_a_retest_whose_worker_went_silent_carries_on_within_a_minute(plan):
    """A killed worker writes no more heartbeats: its re-test is handed on at the next beat
    (every minute), not after the task's hour-long time limit. A long one that still beats
    stays with its worker; one whose message never reached a worker is sent again."""
    from insights.models import PlanRetest
    from insights.services.retests import STALE_AFTER_SECONDS, recover_stalled_retests

    now = utc(2026, 11, 2, 12, 0)
    silent = dt.timedelta(seconds=STALE_AFTER_SECONDS + 1)
    dead = PlanRetest.objects.create(
        plan=plan,
        status="running",
        started_at=now - dt.timedelta(minutes=2),
        heartbeat_at=now - silent,
    )
    alive = PlanRetest.objects.create(
        plan=plan,
        status="running",
        started_at=now - dt.timedelta(hours=2),
        heartbeat_at=now - dt.timedelta(seconds=5),
    )
    with time_machine.travel(now - dt.timedelta(minutes=3), tick=False):
        lost = PlanRetest.objects.create(plan=plan)
    with time_machine.travel(now - dt.timedelta(seconds=30), tick=False):
        just_asked = PlanRetest.objects.create(plan=plan)
    assert recover_stalled_retests(now) == [dead.pk, lost.pk]
    statuses = dict(PlanRetest.objects.values_list("pk", "status"))
    assert statuses == {
        dead.pk: "pending",
        alive.pk: "running",
        lost.pk: "pending",
        just_asked.pk: "pending",
    }
    assert run_plan_retest(dead.pk) is not None  # a new run claims it and finishes it
    dead.refresh_from_db()
    assert dead.status == "done"


@pytest.mark.django_db(transaction=True)
def test_a_running_retest_beats_while_its_worker_works(plan, monkeypatch):
    from insights.models import PlanRetest
    from insights.services import retests

    monkeypatch.setattr(retests, "HEARTBEAT_SECONDS", 0.05)
    retest = PlanRetest.objects.create(plan=plan, status="running", started_at=dj_now())
    with retests.heartbeat(retest.pk):
        first = PlanRetest.objects.get(pk=retest.pk).heartbeat_at
        time.sleep(0.3)
        later = PlanRetest.objects.get(pk=retest.pk).heartbeat_at
    assert later is not None and (first is None or later > first)
