"""A small plan with customer data and three tested assumptions, shared by the re-test tests,
and an SMTP server that is down until the test starts it."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass

from insights.models import Event
from planning.models import Assumption, StrategicChoice
from tests.conftest import _Inbox, free_port

UTC = dt.UTC
# The plan's latest event: every run is as of this moment.
AS_OF = dt.datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@dataclass
class Seeded:
    loyalty: StrategicChoice
    visits: StrategicChoice
    repeat: Assumption  # repeat rate 25% (10 of 40), needs ≥ 50%: broken
    revenue: Assumption  # purchases total 500, needs ≥ 300: holds
    buyers: Assumption  # 40 customers bought, needs ≥ 30: holds

    @property
    def tested(self) -> list[Assumption]:
        return [self.repeat, self.revenue, self.buyers]


def seed_plan(plan) -> Seeded:
    """Two choices, three tested assumptions (plus one tracked by hand) and 51 events:
    40 customers buy once in early January, 10 of them again on 20 January, one visit on 1 March."""
    loyalty = StrategicChoice.objects.create(
        plan=plan, title="Launch a loyalty subscription", position=0
    )
    loyalty.stages.set(plan.stages.filter(name__in=["Buy", "Engage"]))
    visits = StrategicChoice.objects.create(plan=plan, title="Grow organic visits", position=1)
    visits.stages.set(plan.stages.filter(name="Explore"))
    repeat = Assumption.objects.create(
        choice=loyalty,
        statement="At least half of first-time buyers buy again within 30 days",
        metric="repeat_rate",
        params={"event_type": "purchase", "within_days": 30},
        comparator=">=",
        threshold=0.5,
        position=0,
    )
    revenue = Assumption.objects.create(
        choice=loyalty,
        statement="Purchases bring in at least 300",
        metric="total_value",
        params={"event_type": "purchase"},
        comparator=">=",
        threshold=300,
        position=1,
    )
    Assumption.objects.create(choice=loyalty, statement="Members like the perks", position=2)
    buyers = Assumption.objects.create(
        choice=visits,
        statement="At least 30 customers buy",
        metric="active_customers",
        params={"event_type": "purchase"},
        comparator=">=",
        threshold=30,
        position=0,
    )
    first = dt.datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    rows = [(f"c{i:02}", first + dt.timedelta(hours=i), "purchase", 10) for i in range(40)]
    rows += [
        (f"c{i:02}", dt.datetime(2026, 1, 20, 9, 0, tzinfo=UTC), "purchase", 10) for i in range(10)
    ]
    rows.append(("c00", AS_OF, "visit", None))
    Event.objects.bulk_create(
        Event(
            plan=plan,
            customer_id=customer,
            occurred_at=at,
            event_type=kind,
            value=value,
            dedupe_key=Event.identity(f"seed-{n}", {}, 0),
        )
        for n, (customer, at, kind, value) in enumerate(rows)
    )
    return Seeded(loyalty, visits, repeat, revenue, buyers)


def set_previous_statuses(seeded: Seeded) -> None:
    """As earlier runs left them: the repeat rate held, the revenue held, buyers never ran.
    The next run then changes two assumptions (Holds → Broken, Untested → Holds)."""
    Assumption.objects.filter(pk__in=[seeded.repeat.pk, seeded.revenue.pk]).update(status="holds")


class LateSmtpServer:
    """A port Django's mailer points at, where nothing listens until `start()`: a mail server
    that is down, then comes back. What it receives lands in `messages`."""

    def __init__(self, settings) -> None:
        self.port = free_port()
        self.inbox = _Inbox()
        self.controller = None
        settings.MAILERS = {
            "default": {
                "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
                "OPTIONS": {"host": "127.0.0.1", "port": self.port, "timeout": 5},
            }
        }

    @property
    def messages(self) -> list:
        return self.inbox.messages

    def start(self) -> None:
        from aiosmtpd.controller import Controller

        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()


def wait_for(condition: Callable[[], object], timeout: float = 15.0, what: str = "it") -> object:
    """Poll until `condition()` is truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"waited {timeout} s for {what}")
