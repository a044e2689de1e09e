"""The digest e-mail after a scheduled re-test (DOMAIN §5, end): who gets it, what it says,
one-click unsubscribe, and a mail server that is down. E-mails go over real SMTP (aiosmtpd)."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from insights.models import DigestDelivery, PlanRetest
from insights.services.digests import queue_digests, send_digest, unsubscribe_token
from insights.services.retests import dispatch_due_retests, run_plan_retest, start_plan_retest
from planning.models import Membership, Plan, Role

from .retest_data import LateSmtpServer, seed_plan, set_previous_statuses

pytestmark = pytest.mark.django_db

UTC = dt.UTC
SITE = "https://outside-in.example.com"
# The plan re-tests daily at 07:00 UTC; the first slot after it is created is 2 March.
CREATED = dt.datetime(2026, 3, 1, 13, 0, tzinfo=UTC)


def slot(day: int) -> dt.datetime:
    return dt.datetime(2026, 3, day, 7, 0, tzinfo=UTC)


@pytest.fixture
def daily(plan):
    with time_machine.travel(CREATED, tick=False):
        plan.retest_cadence = "daily"
        plan.save()
    return plan


@pytest.fixture
def seeded(daily):
    return seed_plan(daily)


def scheduled_retest(plan: Plan, day: int) -> PlanRetest:
    """What the beat and the worker do at a slot: dispatch, then run the re-test."""
    with time_machine.travel(slot(day) + dt.timedelta(seconds=20), tick=False):
        (retest,) = dispatch_due_retests()
        return run_plan_retest(retest.pk)


def member(plan, username: str, email: str, **extra) -> Membership:
    user = get_user_model().objects.create_user(
        username=username, email=email, first_name=username.title()
    )
    return Membership.objects.create(plan=plan, user=user, role=Role.CIO, **extra)


def recipients(deliveries) -> list[str]:
    return sorted(d.membership.user.email for d in deliveries)


def sent(inbox) -> list:
    return inbox.messages


def parts(message) -> tuple[str, str]:
    return message.get_body(("plain",)).get_content(), message.get_body(("html",)).get_content()


# --- who gets a digest --------------------------------------------------------------------------


def test_a_changed_retest_queues_one_digest_per_member_who_wants_one(
    daily, seeded, cmo, observer, facilitator
):
    set_previous_statuses(seeded)
    member(daily, "nomail", "")
    member(daily, "quits", "quits@example.com", digest_opt_out=True)
    retest = scheduled_retest(daily, 2)
    deliveries = queue_digests(retest.pk)
    assert recipients(deliveries) == ["ana@example.com", "fran@example.com", "olga@example.com"]
    assert {d.kind for d in deliveries} == {"changes"}
    assert all(d.sent_at is None and d.attempts == 0 for d in deliveries)
    # Queued once: a re-test run twice (or a task delivered twice) e-mails nobody twice.
    assert queue_digests(retest.pk) == []
    assert DigestDelivery.objects.count() == 3


def test_nothing_changed_no_email_except_a_weekly_quiet_one_for_who_asked(
    daily, seeded, cmo, cio, smtp_server
):
    Membership.objects.filter(pk=cio.membership.pk).update(all_quiet_digest=True)
    first = scheduled_retest(daily, 2)  # every assumption's first run: all changed
    assert recipients(queue_digests(first.pk)) == ["ana@example.com", "maya@example.com"]

    quiet_days = []
    for day in range(3, 18):  # the data does not move: nothing changes from here on
        retest = scheduled_retest(daily, day)
        with time_machine.travel(slot(day) + dt.timedelta(seconds=25), tick=False):
            deliveries = queue_digests(retest.pk)
        with time_machine.travel(slot(day) + dt.timedelta(seconds=40), tick=False):
            for delivery in deliveries:  # sent a little later, as a worker does
                send_digest(delivery.pk)
        assert recipients(deliveries) in ([], ["maya@example.com"])
        if deliveries:
            assert deliveries[0].kind == "quiet"
            quiet_days.append(day)
    # Slot to slot, exactly a week apart: counted from the sending moments, a daily schedule
    # would drift to every 8 days.
    assert quiet_days == [3, 10, 17]
    assert [m["To"] for m in sent(smtp_server)] == ["maya@example.com"] * 3


def test_a_manual_retest_emails_nobody(daily, seeded, cmo):
    retest = start_plan_retest(daily, user=cmo.user)
    run_plan_retest(retest.pk)
    assert queue_digests(retest.pk) == []


# --- what it says, over real SMTP ---------------------------------------------------------------


def test_the_digest_over_smtp_says_what_changed_grouped_by_choice(
    daily, seeded, cmo, smtp_server, settings
):
    settings.SITE_URL = SITE
    set_previous_statuses(seeded)
    (delivery,) = queue_digests(scheduled_retest(daily, 2).pk)
    assert send_digest(delivery.pk) is True

    (message,) = sent(smtp_server)
    assert message["Subject"] == "FY2027 growth plan: 2 assumptions changed"
    assert message["To"] == "ana@example.com"
    assert message.envelope_rcpt_tos == ["ana@example.com"]
    assert message["From"] == "Outside-In <noreply@outside-in.local>"
    token = unsubscribe_token(cmo.membership)
    unsubscribe = f"{SITE}/unsubscribe/{token}/"
    assert message["List-Unsubscribe"] == f"<{unsubscribe}>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

    text, html = parts(message)
    repeat_url = f"{SITE}/plans/fy2027/assumptions/{seeded.repeat.pk}/history/"
    buyers_url = f"{SITE}/plans/fy2027/assumptions/{seeded.buyers.pk}/history/"
    expected_text = [
        "Hello Ana Tester,",
        'The scheduled re-test of "FY2027 growth plan" changed the status of 2 assumptions.',
        "== Launch a loyalty subscription (Buy, Engage)",
        "* At least half of first-time buyers buy again within 30 days",
        "  Holds -> Broken",
        "  Observed 25.0% (95% interval 14.2% – 40.2%), n = 40; target ≥ 50.0%",
        f"  {repeat_url}",
        "== Grow organic visits (Explore)",
        "* At least 30 customers buy",
        "  Untested -> Holds",
        "  Observed 40; target ≥ 30",
        f"  {buyers_url}",
        f"Open the plan: {SITE}/plans/fy2027/",
        f"Stop these e-mails: {unsubscribe}",
    ]
    lines = text.splitlines()
    assert [line for line in lines if line in expected_text] == expected_text  # all, in this order
    assert "Purchases bring in at least 300" not in text  # unchanged: not in the digest

    expected_html = [
        '<h1 style="margin:0 0 16px;font-size:20px;">FY2027 growth plan</h1>',
        ">Launch a loyalty subscription</h2>",
        ">Buy · Engage</p>",
        f'<a href="{repeat_url}" style="color:#2f5bd3;">At least half of first-time buyers buy again within 30 days</a>',
        "<strong>Holds → Broken</strong>",
        "Observed <strong>25.0%</strong> (95% interval 14.2% – 40.2%), n = 40 · target ≥ 50.0%",
        ">Grow organic visits</h2>",
        ">Explore</p>",
        f'<a href="{buyers_url}" style="color:#2f5bd3;">At least 30 customers buy</a>',
        "<strong>Untested → Holds</strong>",
        "Observed <strong>40</strong> · target ≥ 30",
        f'<a href="{SITE}/plans/fy2027/"',
        f'<a href="{unsubscribe}"',
    ]
    positions = [html.find(fragment) for fragment in expected_html]
    assert -1 not in positions, [f for f, p in zip(expected_html, positions, strict=True) if p < 0]
    assert positions == sorted(positions)
    assert "Purchases bring in at least 300" not in html

    delivery.refresh_from_db()
    assert delivery.sent_at is not None and delivery.attempts == 1 and delivery.last_error == ""


def test_the_quiet_digest_says_all_quiet(daily, seeded, cio, smtp_server):
    Membership.objects.filter(pk=cio.membership.pk).update(
        all_quiet_digest=True, last_quiet_digest_at=slot(2) - dt.timedelta(days=7)
    )
    # Nothing changes: the statuses are already what the run finds.
    for assumption, status in [
        (seeded.repeat, "broken"),
        (seeded.revenue, "holds"),
        (seeded.buyers, "holds"),
    ]:
        type(assumption).objects.filter(pk=assumption.pk).update(status=status)
    retest = scheduled_retest(daily, 2)
    (delivery,) = queue_digests(retest.pk)
    send_digest(delivery.pk)
    (message,) = sent(smtp_server)
    assert message["Subject"] == "FY2027 growth plan: all quiet, no assumption changed"
    text, html = parts(message)
    assert (
        'All quiet: the scheduled re-test of "FY2027 growth plan" changed no assumption\'s status.'
        in text
    )
    assert "All quiet: the scheduled re-test changed no assumption's status." in html
    assert Membership.objects.get(pk=cio.membership.pk).last_quiet_digest_at == slot(2)


# --- unsubscribe --------------------------------------------------------------------------------


def test_the_unsubscribe_link_works_without_signing_in(daily, seeded, cmo, smtp_server, settings):
    settings.SITE_URL = SITE
    (delivery,) = queue_digests(scheduled_retest(daily, 2).pk)
    send_digest(delivery.pk)
    (message,) = sent(smtp_server)
    text, _ = parts(message)
    link = re.search(r"Stop these e-mails: (\S+)", text).group(1)
    path = link.removeprefix(SITE)
    assert message["List-Unsubscribe"] == f"<{link}>"

    stranger = Client(enforce_csrf_checks=True)  # no session, no CSRF cookie: a mail client
    page = stranger.get(path)
    assert page.status_code == 200
    assert "Stop re-test e-mails?" in page.content.decode()
    assert "ana@example.com" in page.content.decode()
    assert not Membership.objects.get(pk=cmo.membership.pk).digest_opt_out

    done = stranger.post(path, {"List-Unsubscribe": "One-Click"})  # RFC 8058 one-click
    assert done.status_code == 200
    assert "You are unsubscribed" in done.content.decode()
    assert Membership.objects.get(pk=cmo.membership.pk).digest_opt_out

    # The next scheduled re-test that changes something e-mails nobody.
    set_previous_statuses(seeded)
    assert queue_digests(scheduled_retest(daily, 3).pk) == []


def test_a_tampered_unsubscribe_link_is_refused(cmo):
    token = unsubscribe_token(cmo.membership)
    tampered = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    for bad in [tampered, "nonsense", token + "x"]:
        for method in ("get", "post"):
            response = getattr(Client(), method)(reverse("unsubscribe", args=[bad]))
            assert response.status_code == 404
            assert "This link does not work" in response.content.decode()
    assert not Membership.objects.get(pk=cmo.membership.pk).digest_opt_out


def test_a_digest_queued_before_the_member_opted_out_is_not_sent(daily, seeded, cmo, smtp_server):
    (delivery,) = queue_digests(scheduled_retest(daily, 2).pk)
    Client().post(reverse("unsubscribe", args=[unsubscribe_token(cmo.membership)]))
    assert send_digest(delivery.pk) is False
    assert sent(smtp_server) == []


# --- a mail server that is down -----------------------------------------------------------------


def test_smtp_down_then_back_delivers_exactly_once(daily, seeded, cmo, settings):
    smtp = LateSmtpServer(settings)
    try:
        (delivery,) = queue_digests(scheduled_retest(daily, 2).pk)
        with pytest.raises(ConnectionRefusedError):
            send_digest(delivery.pk)
        delivery.refresh_from_db()
        assert delivery.sent_at is None
        assert delivery.attempts == 1
        assert delivery.last_error.startswith("ConnectionRefusedError:")

        smtp.start()
        assert send_digest(delivery.pk) is True
        assert [m["To"] for m in smtp.messages] == ["ana@example.com"]
        delivery.refresh_from_db()
        assert delivery.sent_at is not None
        assert (delivery.attempts, delivery.last_error) == (2, "")

        # A retry after the success (a task delivered twice) sends nothing more.
        assert send_digest(delivery.pk) is False
        assert len(smtp.messages) == 1
        delivery.refresh_from_db()
        assert delivery.attempts == 2
    finally:
        smtp.stop()


# --- a change of drift (DOMAIN §10) -------------------------------------------------------------

DRIFT_SENTENCE = "Purchases have been falling since January: 500 → 320"


def stable_statuses(seeded) -> None:
    """The statuses the run finds: no status changes."""
    for assumption, status in [
        (seeded.repeat, "broken"),
        (seeded.revenue, "holds"),
        (seeded.buyers, "holds"),
    ]:
        type(assumption).objects.filter(pk=assumption.pk).update(status=status)


def starts_drifting(retest: PlanRetest, assumption) -> None:
    """What the drift detector leaves when the re-test finds the assumption drifting."""
    drift = {"since": "2026-01-01", "direction": "down", "message": DRIFT_SENTENCE}
    retest.runs.exclude(assumption=assumption).update(drift=None, drift_changed=False)
    retest.runs.filter(assumption=assumption).update(drift=drift, drift_changed=True)
    type(assumption).objects.filter(pk=assumption.pk).update(
        drift_since=dt.date(2026, 1, 1), drift_direction="down", drift_message=DRIFT_SENTENCE
    )


def test_a_change_of_drift_is_in_the_digest_with_its_sentence_and_blast_radius(
    daily, seeded, cmo, smtp_server, settings
):
    from insights.models import Event
    from lifecycle.models import EventMapping
    from planning.models import BTInitiative

    settings.SITE_URL = SITE
    stages = {s.name: s for s in daily.stages.all()}
    for kind, stage in [("purchase", "Buy"), ("signup", "Buy"), ("review", "Engage")]:
        EventMapping.objects.create(plan=daily, event_type=kind, stage=stages[stage])
    # February is the last complete month before as_of (1 March, 12:00). Customers reached
    # there in Buy or Engage: signups of x1–x4, reviews of x3–x6 (x3, x4 in both); the
    # January purchases and the March visit are in other months.
    february = [(f"x{i}", "signup") for i in range(1, 5)] + [
        (f"x{i}", "review") for i in range(3, 7)
    ]
    Event.objects.bulk_create(
        Event(
            plan=daily,
            customer_id=customer,
            occurred_at=dt.datetime(2026, 2, 10 + n, tzinfo=UTC),
            event_type=kind,
            dedupe_key=Event.identity(f"feb-{n}", {}, 0),
        )
        for n, (customer, kind) in enumerate(february)
    )
    billing = BTInitiative.objects.create(
        plan=daily, title="Subscription billing", cost_estimate=250000, position=0
    )
    billing.choices.set([seeded.loyalty])
    app = BTInitiative.objects.create(
        plan=daily, title="Loyalty app", cost_estimate=100000, position=1
    )
    app.choices.set([seeded.loyalty, seeded.visits])
    stable_statuses(seeded)

    retest = scheduled_retest(daily, 2)
    starts_drifting(retest, seeded.revenue)
    assert not retest.runs.filter(changed=True).exists()  # a change of drift alone
    (delivery,) = queue_digests(retest.pk)
    assert delivery.kind == "changes"
    assert send_digest(delivery.pk) is True

    (message,) = sent(smtp_server)
    assert message["Subject"] == "FY2027 growth plan: 1 assumption changed"
    text, html = parts(message)
    revenue_url = f"{SITE}/plans/fy2027/assumptions/{seeded.revenue.pk}/history/"
    expected_text = [
        'The scheduled re-test of "FY2027 growth plan" changed the drift warning of 1 assumption.',
        "== Launch a loyalty subscription (Buy, Engage)",
        "* Purchases bring in at least 300",
        "  Holds, unchanged",
        f"  Drifting: {DRIFT_SENTENCE}",
        "  Observed 500.00; target ≥ 300.00",
        '  Blast radius: "Launch a loyalty subscription" in Buy (4 customers), Engage (4 customers)',
        "  Customers reached in February 2026: 6",
        "  BT initiatives: Subscription billing (250,000); Loyalty app (100,000); "
        "350,000 estimated in all",
        f"  {revenue_url}",
    ]
    lines = text.splitlines()
    assert [line for line in lines if line in expected_text] == expected_text, text
    # Not reported: the unchanged assumptions, whose drift did not change either.
    assert "At least half of first-time buyers" not in text
    assert "At least 30 customers buy" not in text

    expected_html = [
        "changed <strong>the drift warning of 1 assumption</strong>.",
        ">Launch a loyalty subscription</h2>",
        f'<a href="{revenue_url}" style="color:#2f5bd3;">Purchases bring in at least 300</a>',
        "<strong>Holds, unchanged</strong>",
        f"<strong>↘ Drifting:</strong> {DRIFT_SENTENCE}",
        "<strong>Blast radius:</strong> Launch a loyalty subscription · Buy (4 customers), "
        "Engage (4 customers)",
        "Customers reached in February 2026: <strong>6</strong>",
        "Subscription billing (250,000); Loyalty app (100,000) · <strong>350,000</strong> "
        "estimated in all",
    ]
    positions = [html.find(fragment) for fragment in expected_html]
    assert -1 not in positions, [f for f, p in zip(expected_html, positions, strict=True) if p < 0]
    assert positions == sorted(positions)


def test_a_drift_that_ends_is_reported_and_a_status_change_still_comes_first(
    daily, seeded, cmo, smtp_server
):
    set_previous_statuses(seeded)  # the repeat rate breaks, the buyers' first run holds
    retest = scheduled_retest(daily, 2)
    retest.runs.update(drift=None, drift_changed=False)
    retest.runs.filter(assumption=seeded.revenue).update(drift_changed=True)  # drift ended
    (delivery,) = queue_digests(retest.pk)
    send_digest(delivery.pk)
    (message,) = sent(smtp_server)
    assert message["Subject"] == "FY2027 growth plan: 3 assumptions changed"
    text, _ = parts(message)
    assert "changed the status of 2 assumptions and the drift warning of 1." in text
    lines = text.splitlines()
    revenue = lines.index("* Purchases bring in at least 300")
    assert lines[revenue + 1 : revenue + 3] == ["  Holds, unchanged", "  No longer drifting"]
    # The broken repeat rate has its blast radius; what merely holds has none.
    repeat = lines.index("* At least half of first-time buyers buy again within 30 days")
    assert lines[repeat + 1] == "  Holds -> Broken"
    assert lines[repeat + 3].startswith('  Blast radius: "Launch a loyalty subscription" in Buy')
    buyers = lines.index("* At least 30 customers buy")
    assert not any("Blast radius" in line for line in lines[buyers:])


def test_what_a_digest_lists_is_read_in_a_fixed_number_of_queries(
    daily, seeded, django_assert_num_queries
):
    from insights.services.digests import changes_by_choice

    set_previous_statuses(seeded)
    retest = scheduled_retest(daily, 2)
    retest.runs.update(drift_changed=True)  # every assumption listed, two of them drifting
    retest.runs.exclude(assumption=seeded.buyers).update(
        drift={"since": "2026-01-01", "direction": "down", "message": "falling"}
    )
    # Runs (+ choices' stages), the choices' initiatives, where the events live, as_of and the
    # event map (it maps no type to these choices' stages: no statement counts customers).
    with django_assert_num_queries(6):
        groups = changes_by_choice(retest)
    assert [[r.radius is not None for r in g.runs] for g in groups] == [[True, True], [False]]
