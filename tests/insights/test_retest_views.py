"""The re-test pages: an assumption's history, "Re-test now", a plan re-test's progress, the
assumption map, and the plan settings (schedule and e-mail preferences)."""

from __future__ import annotations

import datetime as dt
import json
import re
from urllib.parse import urlencode

import pytest
import time_machine
from django.urls import reverse

from insights.models import AssumptionHistory, AssumptionRun, Event, PlanRetest
from insights.services.retests import retest_assumption_by_id, run_plan_retest, start_plan_retest
from insights.services.versions import data_changed
from planning.models import Activity, Assumption, Membership, Plan
from planning.services import create_plan, save_schedule

from .retest_data import seed_plan

pytestmark = pytest.mark.django_db

UTC = dt.UTC
POLLING = 'hx-trigger="every 1s"'


@pytest.fixture
def seeded(plan):
    return seed_plan(plan)


def urls(plan, seeded, retest) -> dict[str, str]:
    return {
        "assumption": reverse("insights:assumption", args=[plan.slug, seeded.repeat.pk]),
        "assumption_retest": reverse(
            "insights:assumption_retest", args=[plan.slug, seeded.repeat.pk]
        ),
        "plan_retest": reverse("insights:plan_retest", args=[plan.slug]),
        "retest": reverse("insights:retest", args=[plan.slug, retest.pk]),
        "assumption_map": reverse("insights:assumption_map", args=[plan.slug]),
        "settings": reverse("planning:settings", args=[plan.slug]),
    }


def figure(html: str, element_id: str) -> dict:
    found = re.search(
        rf'<script id="{element_id}" type="application/json">(.*?)</script>', html, re.S
    )
    assert found, f"no {element_id} json_script"
    return json.loads(found.group(1))


def htmx(client, url):
    return client.get(url, headers={"HX-Request": "true"})


# --- happy paths ----------------------------------------------------------------------------------


def test_twenty_clicks_of_retest_now_make_one_plan_retest(plan, seeded, cmo, cio):
    """While a re-test of the plan waits or runs, another click joins it (and says so)."""
    url = reverse("insights:plan_retest", args=[plan.slug])
    first = cmo.client.post(url)
    later = [(cio if i % 2 else cmo).client.post(url, follow=True) for i in range(19)]
    retest = PlanRetest.objects.get()
    assert first.headers["Location"] == reverse("insights:retest", args=[plan.slug, retest.pk])
    assert {r.redirect_chain[-1][0] for r in later} == {first.headers["Location"]}
    assert all(
        "A re-test of this plan is already under way: here is its progress." in r.content.decode()
        for r in later
    )
    retest.status = "done"
    retest.save()
    assert cmo.client.post(url).status_code == 302
    assert PlanRetest.objects.count() == 2  # once it is done, a new one starts


def test_twenty_clicks_of_retest_now_on_an_assumption_queue_one_run(
    plan, seeded, cmo, cio, django_capture_on_commit_callbacks
):
    url = reverse("insights:assumption_retest", args=[plan.slug, seeded.repeat.pk])
    with django_capture_on_commit_callbacks() as queued:
        first = cmo.client.post(url)
        later = [(cio if i % 2 else cmo).client.post(url, follow=True) for i in range(19)]
    retests = [job for job in queued if job.args[0] == "insights.tasks.retest_assumption"]
    assert len(retests) == 1  # one job for twenty clicks
    assert {r.redirect_chain[-1][0] for r in later} == {first.headers["Location"]}
    assert all(
        "A re-test of this assumption is already waiting: its result appears here."
        in r.content.decode()
        for r in later
    )
    retest_assumption_by_id(seeded.repeat.pk, user_id=cmo.user.pk)  # the worker runs it
    assert AssumptionRun.objects.filter(assumption=seeded.repeat).count() == 1
    with django_capture_on_commit_callbacks() as queued:
        cmo.client.post(url)
    assert len(queued) == 1  # answered: the next click asks again


def test_retest_now_on_the_plan_runs_every_tested_assumption(
    plan, seeded, cmo, tasks_inline, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = cmo.client.post(reverse("insights:plan_retest", args=[plan.slug]))
    retest = PlanRetest.objects.get()
    assert response.status_code == 302
    assert response.headers["Location"] == reverse("insights:retest", args=[plan.slug, retest.pk])
    assert (retest.trigger, retest.requested_by, retest.status) == ("manual", cmo.user, "done")
    runs = AssumptionRun.objects.filter(retest=retest)
    assert sorted(runs.values_list("assumption_id", flat=True)) == sorted(
        a.pk for a in seeded.tested
    )
    assert set(runs.values_list("requested_by", flat=True)) == {cmo.user.pk}
    assert retest.deliveries.count() == 0  # e-mails are for scheduled re-tests

    page = cmo.client.get(response.headers["Location"]).content.decode()
    assert "Re-test done: 3 of 3 assumptions changed" in page
    assert (
        '<span class="badge badge-untested">Untested</span> → <span class="badge badge-broken">Broken</span>'
        in page
    )
    assert "<td>25.0%</td>" in page and "<td>≥ 50.0%</td>" in page
    assert POLLING not in page


def test_retest_now_on_an_assumption_stores_a_run(
    plan, seeded, bu_leader, tasks_inline, django_capture_on_commit_callbacks
):
    url = reverse("insights:assumption_retest", args=[plan.slug, seeded.repeat.pk])
    with django_capture_on_commit_callbacks(execute=True):
        response = bu_leader.client.post(url)
    run = AssumptionRun.objects.get()
    assert (run.assumption, run.trigger, run.requested_by, run.retest) == (
        seeded.repeat,
        "manual",
        bu_leader.user,
        None,
    )
    assert (run.status, run.observed, run.n) == ("broken", 0.25, 40)
    assert response.status_code == 302
    assert response.headers["Location"].startswith(
        reverse("insights:assumption", args=[plan.slug, seeded.repeat.pk]) + "?since="
    )
    page = bu_leader.client.get(response.headers["Location"]).content.decode()
    assert 'data-status="broken">Broken</span>' in page
    assert POLLING not in page  # the result is in: no more polling


def test_an_assumption_without_a_test_cannot_be_re_tested(
    plan, seeded, cmo, django_capture_on_commit_callbacks
):
    by_hand = Assumption.objects.get(statement="Members like the perks")
    with django_capture_on_commit_callbacks() as callbacks:
        response = cmo.client.post(
            reverse("insights:assumption_retest", args=[plan.slug, by_hand.pk])
        )
    assert response.status_code == 302
    assert callbacks == []
    page = cmo.client.get(response.headers["Location"]).content.decode()
    assert "This assumption has no test to run; add one first." in page


def test_the_assumption_page_polls_only_until_its_result_is_in(
    plan, seeded, cmo, django_capture_on_commit_callbacks
):
    url = reverse("insights:assumption_retest", args=[plan.slug, seeded.repeat.pk])
    with django_capture_on_commit_callbacks() as callbacks:  # enqueued, not yet run
        response = cmo.client.post(url)
    assert len(callbacks) == 1
    waiting = cmo.client.get(response.headers["Location"]).content.decode()
    assert "Re-testing…" in waiting and POLLING in waiting

    fragment = htmx(cmo.client, response.headers["Location"])
    html = fragment.content.decode()
    assert fragment.status_code == 200
    assert "<html" not in html
    assert html.lstrip().startswith('<div id="verdict"')
    assert POLLING in html and "Re-testing…" in html

    retest_assumption_by_id(seeded.repeat.pk, user_id=cmo.user.pk)  # what the worker does
    html = htmx(cmo.client, response.headers["Location"]).content.decode()
    assert "<html" not in html
    assert 'hx-trigger="every 1s"' not in html  # the verdict is in; the history came with it
    assert 'data-status="broken">Broken</span>' in html
    assert '<span class="observed">25.0%</span>' in html
    assert "95% interval 14.2% – 40.2%" in html  # as the value reads, not 0.1419
    # The history (chart data and runs table) comes along out of band, so it is not stale.
    assert (
        '<section id="history" class="panel" aria-labelledby="history-heading" hx-swap-oob="true">'
        in html
    )
    assert 'id="history-figure"' in html and "<td>25.0%</td>" in html
    assert "hx-swap-oob" not in waiting
    # A since without a zone is read as UTC, not a server error.
    plain = htmx(
        cmo.client,
        reverse("insights:assumption", args=[plan.slug, seeded.repeat.pk])
        + "?since=2026-03-01T00:00:00",
    )
    assert plain.status_code == 200


def test_the_retest_page_polls_while_pending_and_stops_when_done(plan, seeded, observer):
    retest = start_plan_retest(plan)
    url = reverse("insights:retest", args=[plan.slug, retest.pk])
    html = htmx(observer.client, url).content.decode()
    assert "<html" not in html
    assert html.lstrip().startswith('<section id="retest-progress"')
    assert POLLING in html
    assert "Re-testing 3 assumptions…" in html and '<progress max="3" value="0"' in html

    run_plan_retest(retest.pk)
    html = htmx(observer.client, url).content.decode()
    assert "<html" not in html
    assert POLLING not in html
    assert "Re-test done: 3 of 3 assumptions changed" in html
    full = observer.client.get(url).content.decode()
    assert "<html" in full and POLLING not in full


def test_the_history_chart_draws_data_time_with_interval_threshold_and_runs(plan, seeded, cmo):
    # Three runs a day apart; 10 more first-time buyers come back before each of the later two.
    for day, returning in [(2, []), (3, range(10, 20)), (4, range(20, 30))]:
        Event.objects.bulk_create(
            Event(
                plan=plan,
                customer_id=f"c{i:02}",
                event_type="purchase",
                value=10,
                occurred_at=dt.datetime(2026, 1, 21, 9, 0, tzinfo=UTC),
                dedupe_key=Event.identity(f"again-{i}", {}, 0),
            )
            for i in returning
        )
        data_changed(plan.pk)  # what an import does
        with time_machine.travel(dt.datetime(2026, 3, day, 8, 0, tzinfo=UTC), tick=False):
            retest_assumption_by_id(seeded.repeat.pk)
    runs = list(AssumptionRun.objects.order_by("created_at"))
    assert [r.observed for r in runs] == [0.25, 0.5, 0.75]
    assert [r.status for r in runs] == ["broken", "at_risk", "holds"]

    html = cmo.client.get(
        reverse("insights:assumption", args=[plan.slug, seeded.repeat.pk])
    ).content.decode()
    data = figure(html, "history-figure")["data"]
    traces = {t.get("name"): t for t in data}
    as_of = runs[-1].as_of.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="seconds")
    # Re-test runs sit where their data ended (data time), not when someone clicked.
    assert traces["Re-test runs"]["x"] == [as_of] * 3
    assert traces["Re-test runs"]["y"] == [0.25, 0.5, 0.75]
    # The history: the end of every month with data, then as_of, oldest first.
    observed = traces["Observed at the end of each period"]
    history = AssumptionHistory.objects.get(
        assumption=seeded.repeat, data_version=Plan.objects.get(pk=plan.pk).data_version
    )
    assert observed["x"] == [p["as_of"][:19] for p in history.points if p["observed"] is not None]
    assert observed["x"] == sorted(observed["x"]) and observed["x"][-1] == as_of
    assert all(x.endswith("T23:59:59") for x in observed["x"][:-1])
    assert observed["y"][-1] == 0.75  # the latest run's own value, on the same data
    band_low = traces["95% interval"]
    band_high = next(t for t in data if t.get("showlegend") is False)
    banded = [p for p in history.points if p["ci_low"] is not None]
    assert band_low["y"] == [p["ci_low"] for p in banded]
    assert band_high["y"] == [p["ci_high"] for p in banded]
    assert band_low["fill"] == "tonexty"
    threshold = traces["Threshold 50.0%"]
    assert threshold["y"] == [0.5, 0.5] and threshold["x"][-1] == as_of
    assert figure(html, "history-figure")["layout"]["xaxis"]["type"] == "date"
    summary = f"{len(observed['x'])} points of data time from"
    assert f'role="img" aria-label="{summary}' in html
    assert "75.0% with the latest data (holds), against a target ≥ 50.0%." in html
    # The tables say it too, for anyone who does not see the chart.
    in_history = [p["observed"] for p in history.points]
    assert html.count("<td>25.0%</td>") == 1 + in_history.count(0.25)
    assert html.count("<td>75.0%</td>") == 1 + in_history.count(0.75)


def test_the_assumption_map_shows_every_assumption_and_recent_retests(plan, seeded, cio, observer):
    retest = start_plan_retest(plan, user=cio.user)
    run_plan_retest(retest.pk)
    html = cio.client.get(reverse("insights:assumption_map", args=[plan.slug])).content.decode()
    statements = {a.statement for a in Assumption.objects.all()}
    for statement in statements:
        assert statement in html
    traces = figure(html, "map-figure")["data"]
    assert {t["name"]: sorted(t["text"]) for t in traces} == {
        "Holds": sorted([seeded.revenue.statement, seeded.buyers.statement]),
        "Broken": [seeded.repeat.statement],
        "Untested": ["Members like the perks"],
    }
    assert 'role="img" aria-label="4 assumptions (' in html
    assert reverse("insights:retest", args=[plan.slug, retest.pk]) in html
    assert "Re-test now" in html
    assert (
        "Re-test now"
        not in observer.client.get(
            reverse("insights:assumption_map", args=[plan.slug])
        ).content.decode()
    )


def test_the_map_query_count_does_not_grow_with_the_plan(
    plan, seeded, cmo, django_assert_max_num_queries
):
    url = reverse("insights:assumption_map", args=[plan.slug])
    cmo.client.get(url)
    with django_assert_max_num_queries(12) as small:
        cmo.client.get(url)
    for i in range(20):
        Assumption.objects.create(choice=seeded.visits, statement=f"Extra {i}", position=10 + i)
    with django_assert_max_num_queries(len(small.captured_queries)):
        cmo.client.get(url)


# --- refusals -------------------------------------------------------------------------------------


def test_wrong_methods_are_refused(plan, seeded, cmo):
    retest = start_plan_retest(plan)
    url = urls(plan, seeded, retest)
    for name in ("assumption_retest", "plan_retest"):
        assert cmo.client.get(url[name]).status_code == 405
    for name in ("assumption", "retest", "assumption_map"):
        assert cmo.client.post(url[name]).status_code == 405
    assert cmo.client.put(url["settings"]).status_code == 405
    assert cmo.client.delete(url["settings"]).status_code == 405
    assert PlanRetest.objects.count() == 1 and AssumptionRun.objects.count() == 0


def test_an_observer_reads_but_cannot_re_test(
    plan, seeded, observer, django_capture_on_commit_callbacks
):
    retest = start_plan_retest(plan)
    url = urls(plan, seeded, retest)
    for name in ("assumption", "retest", "assumption_map", "settings"):
        assert observer.client.get(url[name]).status_code == 200
    with django_capture_on_commit_callbacks() as callbacks:
        assert observer.client.post(url["assumption_retest"]).status_code == 403
        assert observer.client.post(url["plan_retest"]).status_code == 403
        assert observer.client.post(url["settings"], schedule_form("daily")).status_code == 403
    assert callbacks == []
    assert PlanRetest.objects.count() == 1 and AssumptionRun.objects.count() == 0
    assert Plan.objects.get().retest_cadence == "off"
    assert "Re-test now" not in observer.client.get(url["assumption"]).content.decode()


def test_an_outsider_learns_nothing(plan, seeded, outsider, django_capture_on_commit_callbacks):
    retest = start_plan_retest(plan)
    url = urls(plan, seeded, retest)
    with django_capture_on_commit_callbacks() as callbacks:
        for name in ("assumption", "retest", "assumption_map", "settings"):
            assert outsider.client.get(url[name]).status_code == 404
            assert htmx(outsider.client, url[name]).status_code == 404
        for name in ("assumption_retest", "plan_retest", "settings"):
            assert outsider.client.post(url[name]).status_code == 404
    assert callbacks == []
    assert PlanRetest.objects.count() == 1 and AssumptionRun.objects.count() == 0


def test_another_plans_assumption_or_retest_is_not_found_through_this_plan(plan, seeded, cmo):
    other = create_plan("Other plan", "other")
    other_seeded = seed_plan(other)
    other_retest = start_plan_retest(other)
    assert (
        cmo.client.get(
            reverse("insights:assumption", args=[plan.slug, other_seeded.repeat.pk])
        ).status_code
        == 404
    )
    assert (
        cmo.client.post(
            reverse("insights:assumption_retest", args=[plan.slug, other_seeded.repeat.pk])
        ).status_code
        == 404
    )
    assert (
        cmo.client.get(reverse("insights:retest", args=[plan.slug, other_retest.pk])).status_code
        == 404
    )


def test_signed_out_visitors_are_sent_to_sign_in(plan, seeded, client):
    retest = start_plan_retest(plan)
    for name, target in urls(plan, seeded, retest).items():
        method = client.post if name in ("assumption_retest", "plan_retest") else client.get
        response = method(target)
        assert response.status_code == 302
        assert response.headers["Location"].startswith(reverse("login"))


# --- settings: the schedule and e-mail preferences ------------------------------------------------


def schedule_form(
    cadence: str, weekday: int = 0, time: str = "07:00", zone: str = "Europe/Paris"
) -> dict:
    return {
        "schedule-retest_cadence": cadence,
        "schedule-retest_weekday": str(weekday),
        "schedule-retest_time": time,
        "schedule-retest_timezone": zone,
    }


def test_a_facilitator_saves_the_schedule(plan, facilitator):
    url = reverse("planning:settings", args=[plan.slug])
    with time_machine.travel(dt.datetime(2026, 3, 11, 12, 0, tzinfo=UTC), tick=False):
        response = facilitator.client.post(url, schedule_form("weekly", weekday=0))
    assert response.status_code == 302
    assert response.headers["Location"] == url
    plan.refresh_from_db()
    assert (plan.retest_cadence, plan.retest_weekday, plan.retest_time, plan.retest_timezone) == (
        "weekly",
        0,
        dt.time(7, 0),
        "Europe/Paris",
    )
    assert plan.next_retest_at == dt.datetime(2026, 3, 16, 6, 0, tzinfo=UTC)
    activity = Activity.objects.get(item_type="schedule")
    assert (activity.actor, activity.action, activity.item_label) == (
        facilitator.user,
        "updated",
        "Weekly on Mondays at 07:00 Europe/Paris",
    )
    assert (
        activity.before["retest_cadence"] == "off" and activity.after["retest_cadence"] == "weekly"
    )
    page = facilitator.client.get(url).content.decode()
    assert "Re-test schedule saved: Weekly on Mondays at 07:00 Europe/Paris." in page


def test_save_schedule_records_what_was_stored_before(plan, facilitator):
    # A ModelForm validated against the plan has already changed it in memory: "before" is
    # what the database held, not what the object says.
    plan.retest_cadence = "daily"
    data = {
        "retest_cadence": "weekly",
        "retest_weekday": 4,
        "retest_time": dt.time(6, 30),
        "retest_timezone": "America/New_York",
    }
    with time_machine.travel(dt.datetime(2026, 3, 11, 12, 0, tzinfo=UTC), tick=False):
        saved = save_schedule(plan, facilitator.user, data)
    stored = Plan.objects.get(pk=plan.pk)
    weekly = "Weekly on Fridays at 06:30 America/New_York"
    assert saved.schedule_display == stored.schedule_display == weekly
    assert stored.next_retest_at == dt.datetime(2026, 3, 13, 10, 30, tzinfo=UTC)
    assert stored.version == plan.version + 1  # open boards hear of it
    activity = Activity.objects.get(item_type="schedule")
    assert activity.actor == facilitator.user
    assert activity.before == {
        "retest_cadence": "off",
        "retest_weekday": "0",
        "retest_time": "07:00:00",
        "retest_timezone": "UTC",
    }
    assert activity.after == {
        "retest_cadence": "weekly",
        "retest_weekday": "4",
        "retest_time": "06:30:00",
        "retest_timezone": "America/New_York",
    }


def test_a_bad_time_zone_is_explained(plan, facilitator):
    url = reverse("planning:settings", args=[plan.slug])
    response = facilitator.client.post(url, schedule_form("daily", zone="Mars/Olympus_Mons"))
    assert response.status_code == 400
    assert (
        "“Mars/Olympus_Mons” is not a time zone (try “Europe/Paris” or “UTC”)."
        in response.content.decode()
    )
    plan.refresh_from_db()
    assert (plan.retest_cadence, plan.retest_timezone, plan.next_retest_at) == ("off", "UTC", None)
    assert not Activity.objects.filter(item_type="schedule").exists()


def test_a_cmo_cannot_change_the_schedule_but_can_change_their_own_emails(plan, cmo, cio):
    url = reverse("planning:settings", args=[plan.slug])
    assert cmo.client.post(url, schedule_form("daily")).status_code == 403
    plan.refresh_from_db()
    assert (plan.retest_cadence, plan.next_retest_at) == ("off", None)
    page = cmo.client.get(url).content.decode()
    assert "Only a facilitator can change the schedule." in page

    response = cmo.client.post(url, {"email-all_quiet_digest": "on"})  # "receive" unticked
    assert response.status_code == 302
    mine = Membership.objects.get(pk=cmo.membership.pk)
    assert (mine.digest_opt_out, mine.all_quiet_digest) == (True, True)
    theirs = Membership.objects.get(pk=cio.membership.pk)
    assert (theirs.digest_opt_out, theirs.all_quiet_digest) == (False, False)

    cmo.client.post(url, {"email-receive_digests": "on"})
    mine.refresh_from_db()
    assert (mine.digest_opt_out, mine.all_quiet_digest) == (False, False)


def test_an_observer_can_stop_their_own_emails(plan, observer):
    url = reverse("planning:settings", args=[plan.slug])
    assert observer.client.post(url, {}).status_code == 302
    assert Membership.objects.get(pk=observer.membership.pk).digest_opt_out


def test_the_assumption_page_stops_waiting_for_a_retest_that_never_runs(plan, seeded, cmo):
    url = reverse("insights:assumption", args=[plan.slug, seeded.repeat.pk])
    long_ago = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)).isoformat()
    html = htmx(cmo.client, f"{url}?{urlencode({'since': long_ago})}").content.decode()
    assert "This re-test has not run yet" in html
    assert POLLING not in html
