"""The demo: Northwind Outfitters' FY2027 plan and 18 months of its customers' events.

The plan is a plan file, data/northwind-fy2027.json, loaded through the plan-file importer;
this module makes the events and loads both.

Everything here is deterministic. The events come from a seeded simulation of an omnichannel
outdoor retailer whose customers change in the last quarter (August–October 2026): repeat
purchases fall, a new delivery carrier brings support tickets, NPS drops and the relaunched app
grows. Re-tested as of the latest event, the plan's assumptions come out varied: some hold, some
are at risk, some are broken and a few have too little data to tell.
"""

from __future__ import annotations

import datetime as dt
import io
import itertools
import math
import random
import secrets
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files import File
from django.db import connection, transaction
from django.utils import timezone

from planning.models import Plan
from planning.planfile import import_plan, load_plan_file
from planning.sessions.agenda import create_session

from .models import EVENT_FIELDS, AssumptionRun, Event, Import
from .services.imports.csvfiles import CsvWriter
from .services.imports.rows import Columns
from .services.imports.sinks import sink_for
from .services.retests import retest_plan

# Printed for everyone to use, so only with DEBUG on: a production site gets random ones.
DEMO_PASSWORD = "northwind-demo-2027"
DEMO_URL = "http://127.0.0.1:8000/"
DEMO_CUSTOMERS = 10_000
DEMO_SEED = 2027
DEMO_FILE_NAME = "northwind-demo-events.csv"
EMAIL_DOMAIN = "northwind.example"
BATCH_SIZE = 5000
# The events file's columns (DOMAIN §4), as the demo's import keeps them.
CSV_COLUMNS = EVENT_FIELDS

START = dt.datetime(2025, 5, 1, tzinfo=dt.UTC)
END = dt.datetime(2026, 10, 31, 23, 59, 59, tzinfo=dt.UTC)
# When the customers change: the new delivery carrier and the relaunched app go live.
SHIFT = dt.datetime(2026, 8, 1, tzinfo=dt.UTC)

# username, first name, last name, role as the login list shows it.
DEMO_USERS = [
    ("elena", "Elena", "Ruiz", "CMO"),
    ("marcus", "Marcus", "Obi", "CIO"),
    ("priya", "Priya", "Natarajan", "BU leader, Stores"),
    ("tom", "Tom", "Becker", "BU leader, Online"),
    ("sofia", "Sofia", "Lindqvist", "Facilitator"),
    ("david", "David", "Chen", "Observer"),
]
ADMIN_USERNAME = "admin"


class DemoEvent(NamedTuple):
    """One generated event, in the columns of an events file (DOMAIN §4)."""

    event_id: str
    customer_id: str
    occurred_at: dt.datetime
    event_type: str
    value: Decimal | None
    segment: str
    channel: str


# --- The customers ----------------------------------------------------------------------------


class Segment(NamedTuple):
    share: float
    gap_days: float  # mean days between two purchases
    stop: float  # chance to stop buying after each purchase
    basket: float  # median basket, in dollars


SEGMENTS = {
    "loyal": Segment(0.16, 40, 0.08, 95),
    "value": Segment(0.54, 110, 0.48, 55),
    "premium": Segment(0.29, 75, 0.30, 150),
    "trade": Segment(0.01, 30, 0.06, 320),
}
# Before their first purchase a customer is a prospect; the CDP segments buyers only.
PROSPECT = "prospect"
HOME_CHANNELS = {"store": 0.42, "web": 0.36, "app": 0.17, "phone": 0.05}
HOME_CHANNELS_AFTER_SHIFT = {"store": 0.32, "web": 0.32, "app": 0.32, "phone": 0.04}
# The stores are in the US Central time zone: open 9:00–21:00 there, about 14:00–02:00 UTC.
STORE_HOURS = [14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25]
# New customers per month, relative: the outdoor season and the holidays bring more.
SEASON = {1: 0.8, 2: 0.8, 3: 1.0, 4: 1.1, 5: 1.2, 6: 1.2, 7: 1.0, 8: 1.0, 9: 0.9, 10: 1.0}
SEASON |= {11: 1.3, 12: 1.5}

Row = tuple[dt.datetime, str, Decimal | None, str]


class _Customer:
    """One customer's simulated history, as rows of (time, type, value, channel)."""

    def __init__(self, rng: random.Random, number: int) -> None:
        self.rng = rng
        self.id = f"cust-{number:05d}"
        self.segment = _weighted(rng, {name: s.share for name, s in SEGMENTS.items()})
        self.profile = SEGMENTS[self.segment]
        self.first_purchase: dt.datetime | None = None
        self.home = "web"
        self.rows: list[Row] = []

    def add(self, when: dt.datetime, event_type: str, channel: str, value=None) -> None:
        if START <= when <= END:
            self.rows.append((when, event_type, value, channel))

    def segment_at(self, when: dt.datetime) -> str:
        bought = self.first_purchase is not None and when >= self.first_purchase
        return self.segment if bought else PROSPECT

    def at(self, day: dt.datetime, channel: str) -> dt.datetime:
        """A moment on `day` at an hour that suits the channel."""
        hour = self.rng.choice(STORE_HOURS) if channel == "store" else self.rng.randrange(24)
        midnight = day.replace(hour=0, minute=0, second=0, microsecond=0)
        return midnight + dt.timedelta(hours=hour, seconds=self.rng.randrange(3600))

    def channel_for(self, when: dt.datetime, allowed: tuple[str, ...] = ()) -> str:
        """Mostly the customer's home channel; since the relaunch, the app takes a share."""
        rng = self.rng
        channel = self.home if rng.random() < 0.8 else _weighted(rng, HOME_CHANNELS)
        if when >= SHIFT and channel in ("web", "store") and rng.random() < 0.2:
            channel = "app"
        if allowed and channel not in allowed:
            channel = allowed[0] if rng.random() < 0.7 else rng.choice(allowed)
        return channel

    def simulate(self) -> None:
        rng = self.rng
        if rng.random() < 0.15:  # a customer from before the data starts: buys straight away
            first = START + dt.timedelta(days=rng.uniform(0, 45))
            self.home = _weighted(rng, HOME_CHANNELS)
            self.buy(first)
            return
        when = _acquisition(rng)
        self.home = _weighted(rng, HOME_CHANNELS_AFTER_SHIFT if when >= SHIFT else HOME_CHANNELS)
        if rng.random() < 0.2:  # a prospect: clicks an ad, maybe looks around, never returns
            self.add(self.at(when, "web"), "ad_click", self.channel_for(when, ("web", "app")))
            if rng.random() < 0.5:
                self.browse(when + dt.timedelta(days=rng.choice([0, 0, 1, 3])), first_time=True)
            return
        if rng.random() < 0.55:
            self.add(self.at(when, "web"), "ad_click", self.channel_for(when, ("web", "app")))
            when += dt.timedelta(days=rng.choice([0, 0, 0, 1, 2, 5]))
        self.browse(when, first_time=True)
        trial = rng.random() < 0.08
        if trial:
            started = self.at(when + dt.timedelta(days=rng.randrange(4)), "web")
            self.add(started, "trial_start", self.channel_for(when, ("web", "app")))
        if rng.random() < (0.78 if trial else 0.62):
            self.buy(when + dt.timedelta(days=min(rng.expovariate(1 / 7), 120)), signup=True)
            return
        for _ in range(rng.choice([0, 0, 1, 2])):
            self.browse(when + dt.timedelta(days=rng.uniform(1, 40)))
        if rng.random() < 0.15:
            self.add(self.at(when, "web"), "signup", self.channel_for(when, ("web", "app")))

    def browse(self, day: dt.datetime, first_time: bool = False) -> None:
        rng = self.rng
        channel = self.channel_for(day, ("store", "web", "app"))
        moment = self.at(day, channel)
        self.add(moment, "visit", channel)
        if channel != "store":
            for n in range(rng.choice([0, 1, 1, 2, 3] if first_time else [0, 1, 1, 2])):
                self.add(moment + dt.timedelta(minutes=3 + 4 * n), "content_view", channel)
        if rng.random() < 0.08:
            self.add(moment + dt.timedelta(minutes=20), "faq_view", "web")

    def buy(self, when: dt.datetime, signup: bool = False) -> None:
        """The first purchase, then repeat purchases until the customer stops."""
        rng = self.rng
        first = True
        while when <= END:
            after = when >= SHIFT
            # Since the shift, a share of repeat purchases does not happen: the customer browses.
            if not first and after and rng.random() < 0.4:
                self.browse(when)
            else:
                self.purchase(when, signup=signup and first)
                first = False
            if rng.random() < self.profile.stop + (0.08 if after else 0):
                return
            gap = rng.expovariate(1 / self.profile.gap_days) + rng.uniform(1, 6)
            self.between(when, gap)
            when += dt.timedelta(days=gap)

    def purchase(self, day: dt.datetime, signup: bool) -> None:
        rng = self.rng
        channel = self.channel_for(day)
        moment = self.at(day, channel)
        if self.first_purchase is None:
            self.first_purchase = moment
        if channel != "store":
            self.add(moment - dt.timedelta(minutes=15), "visit", channel)
            if rng.random() < 0.5:
                self.add(moment - dt.timedelta(minutes=10), "content_view", channel)
        if signup and (channel != "store" or rng.random() < 0.3):
            self.add(moment - dt.timedelta(minutes=5), "signup", channel)
        value = _money(rng.lognormvariate(math.log(self.profile.basket), 0.5))
        self.add(moment, "purchase", channel, value)
        if rng.random() < 0.04:  # a forgotten item: a second order the same day is no repeat
            extra = moment + dt.timedelta(minutes=rng.randrange(20, 180))
            if extra.date() == moment.date():
                self.add(extra, "purchase", channel, _money(rng.uniform(8, 40)))
        unhappy = self.after_sales(moment, channel, value)
        if rng.random() < 0.2:
            asked = self.at(moment + dt.timedelta(days=rng.randrange(3, 12)), "web")
            score = _score(rng, asked, unhappy)
            self.add(asked, "survey", rng.choice(["web", "app"]), Decimal(score))
        if rng.random() < 0.07:
            stars = max(1, min(5, round(rng.gauss(3.4 if unhappy else 4.3, 0.8))))
            posted = self.at(moment + dt.timedelta(days=rng.randrange(4, 21)), "web")
            self.add(posted, "review", rng.choice(["web", "app"]), Decimal(stars))
        if rng.random() < (0.05 if self.segment == "loyal" else 0.015):
            referred = self.at(moment + dt.timedelta(days=rng.randrange(1, 30)), "web")
            self.add(referred, "referral", rng.choice(["web", "app"]))

    def after_sales(self, moment: dt.datetime, channel: str, value: Decimal) -> bool:
        """Delivery, questions and returns after a purchase; True when the customer had trouble."""
        rng = self.rng
        after = moment >= SHIFT
        unhappy = False
        if channel != "store":
            # The new carrier is slower, and its late parcels make customers ask.
            arrives = moment + dt.timedelta(days=rng.randint(2, 7) if after else rng.randint(1, 4))
            self.add(self.at(arrives, "web"), "delivery", channel)
            if rng.random() < (0.17 if after else 0.05):
                unhappy = True
                ticket = self.at(arrives + dt.timedelta(days=rng.randrange(3)), "web")
                self.add(ticket, "support_ticket", rng.choice(["phone", "web", "app"]))
            if rng.random() < (0.11 if after else 0.07):
                self.add(self.at(arrives, "web"), "chat", rng.choice(["web", "app"]))
        elif rng.random() < 0.02:
            unhappy = True
            self.add(self.at(moment + dt.timedelta(days=3), "web"), "support_ticket", "phone")
        if rng.random() < 0.12:
            read = self.at(moment + dt.timedelta(days=rng.randrange(1, 10)), "web")
            self.add(read, "faq_view", rng.choice(["web", "app"]))
        if rng.random() < 0.09:
            refund = _money(float(value) * rng.choice([0.3, 0.5, 1.0, 1.0]))
            back = self.at(moment + dt.timedelta(days=rng.randrange(5, 25)), "store")
            self.add(back, "return", rng.choice(["store", "web"]), refund)
        return unhappy

    def between(self, since: dt.datetime, gap: float) -> None:
        """Browsing, logins and app use between two purchases."""
        rng = self.rng
        online = self.home in ("web", "app") or rng.random() < 0.25
        for _ in range(_poisson(rng, gap / (30 if online else 60))):
            self.browse(since + dt.timedelta(days=rng.uniform(1, gap)))
        if not online:
            return
        for _ in range(_poisson(rng, gap / 12)):
            day = since + dt.timedelta(days=rng.uniform(1, gap))
            channel = self.channel_for(day, ("app", "web"))
            moment = self.at(day, channel)
            self.add(moment, "login", channel)
            if channel == "app" and rng.random() < 0.7:
                self.add(moment + dt.timedelta(minutes=2), "usage", "app")


def _weighted(rng: random.Random, weights: dict[str, float]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def _acquisition(rng: random.Random) -> dt.datetime:
    """When a new customer first shows up: more every month (the brand grows), and by season."""
    span = END - START
    while True:  # rejection sampling under the density's maximum, 1.5 × 1.5
        x = rng.random()
        when = START + span * x
        if rng.random() * 2.25 < (1 + x / 2) * SEASON[when.month]:
            return when


def _money(amount: float) -> Decimal:
    return Decimal(f"{max(amount, 1):.2f}")


def _poisson(rng: random.Random, mean: float) -> int:
    count, total = 0, rng.expovariate(1)
    while total < mean:
        count += 1
        total += rng.expovariate(1)
    return count


def _score(rng: random.Random, when: dt.datetime, unhappy: bool) -> int:
    """A 0–10 answer to “How likely are you to recommend Northwind to a friend?”."""
    if unhappy:
        weights = [0.15, 0.25, 0.6]
    elif when >= SHIFT:
        weights = [0.44, 0.3, 0.26]
    else:
        weights = [0.56, 0.28, 0.16]
    kind = rng.choices(["promoter", "passive", "detractor"], weights=weights)[0]
    if kind == "promoter":
        return rng.choice([9, 9, 10])
    if kind == "passive":
        return rng.choice([7, 8, 8])
    return rng.choice([0, 2, 3, 4, 5, 5, 6, 6, 6])


def generate_events(customers: int = DEMO_CUSTOMERS, seed: int = DEMO_SEED) -> Iterator[DemoEvent]:
    """Northwind's events, one customer at a time (never all in memory), numbered in that order."""
    rng = random.Random(seed)
    counter = itertools.count(1)
    for number in range(1, customers + 1):
        customer = _Customer(rng, number)
        customer.simulate()
        customer.rows.sort(key=lambda row: row[0])
        for when, event_type, value, channel in customer.rows:
            event_id = f"nw-{next(counter):06d}"
            segment = customer.segment_at(when)
            yield DemoEvent(event_id, customer.id, when, event_type, value, segment, channel)


# --- The plan ---------------------------------------------------------------------------------

# The demo plan is a plan file like any other (DOMAIN §6): `manage.py import_plan` reads it too.
DEMO_PLAN_FILE = Path(__file__).resolve().parent / "data" / "northwind-fy2027.json"
DEMO_PLAN: dict[str, Any] = load_plan_file(DEMO_PLAN_FILE)
DEMO_SLUG: str = DEMO_PLAN["slug"]


# --- Loading ----------------------------------------------------------------------------------


@dataclass
class DemoLogin:
    username: str
    name: str
    role: str
    created: bool
    password: str = ""  # set by this run, to print once; empty for a user that was there


@dataclass
class DemoResult:
    plan: Plan
    created: bool
    logins: list[DemoLogin]
    events: int = 0
    seconds: float = 0.0


def ensure_demo_users(published_password: bool) -> list[DemoLogin]:
    """The demo's users, created when missing with the published demo password, or each with
    its own random one; existing ones are left be."""
    user_model = get_user_model()
    logins = []
    for username, first, last, role in DEMO_USERS:
        user, created = user_model.objects.get_or_create(
            username=username,
            defaults={"first_name": first, "last_name": last, "email": _email(username)},
        )
        password = ""
        if created:
            password = _new_password(published_password)
            user.set_password(password)
            user.save(update_fields=["password"])
        logins.append(DemoLogin(username, user.get_full_name(), role, created, password))
    admin_role = "Staff: the back-office at /admin/"
    if user_model.objects.filter(username=ADMIN_USERNAME).exists():
        logins.append(DemoLogin(ADMIN_USERNAME, "", admin_role, False))
    else:
        password = _new_password(published_password)
        user_model.objects.create_superuser(ADMIN_USERNAME, _email(ADMIN_USERNAME), password)
        logins.append(DemoLogin(ADMIN_USERNAME, "", admin_role, True, password))
    return logins


def _new_password(published: bool) -> str:
    return DEMO_PASSWORD if published else secrets.token_urlsafe(15)


def _email(username: str) -> str:
    return f"{username}@{EMAIL_DOMAIN}"


def load_demo(
    *,
    reset: bool = False,
    customers: int = DEMO_CUSTOMERS,
    seed: int = DEMO_SEED,
    published_password: bool | None = None,
) -> DemoResult:
    """The demo users, plan and events. Safe to run again: an existing demo plan is left as it
    is, unless `reset` replaces it. All or nothing: a failed load leaves the old demo intact.
    New users get the published demo password only with DEBUG on (or `published_password`);
    otherwise each gets its own random password, returned in `logins` to be shown once."""
    started = time.monotonic()
    if published_password is None:
        published_password = settings.DEBUG
    logins = ensure_demo_users(published_password)
    stored: list[str] = []
    try:
        with transaction.atomic():
            if reset:
                delete_demo_plan()
            existing = Plan.objects.filter(slug=DEMO_SLUG).first()
            if existing is not None:
                return DemoResult(existing, False, logins, existing.events.count())
            plan, _ = import_plan(load_plan_file(DEMO_PLAN_FILE), actor=None)
            count = store_events(plan, generate_events(customers, seed), stored)
            plan_demo_workshop(plan)
    except BaseException:
        for name in stored:  # its rows are rolled back: the file must not outlive them
            _storage().delete(name)
        raise
    analyze_events()
    # A newcomer's demo opens alive (issue "Assumptions through time"): every assumption
    # tested once, with its history and early warning computed from the data.
    retest_plan(plan, trigger=AssumptionRun.Trigger.COMMAND)
    return DemoResult(plan, True, logins, count, time.monotonic() - started)


def plan_demo_workshop(plan: Plan) -> None:
    """The facilitator's next workshop, planned from the "Outside-in planning workshop" template
    on the Workshop tab, ready to start."""
    facilitator = get_user_model().objects.get(username="sofia")
    create_session(
        plan,
        facilitator,
        title="FY2027 planning workshop",
        date=dt.date(2027, 1, 14),
        template="workshop",
    )


def analyze_events() -> None:
    """Refresh the planner's statistics after a bulk load. Without them PostgreSQL plans the
    metric queries for an empty table and a re-test of the demo takes minutes, not seconds."""
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {connection.ops.quote_name(Event._meta.db_table)}")


@transaction.atomic
def delete_demo_plan() -> bool:
    """Delete the demo plan with everything in it; the events file the demo stored goes once
    the deletion is committed."""
    plan = Plan.objects.filter(slug=DEMO_SLUG).first()
    if plan is None:
        return False
    demo_imports = plan.imports.filter(original_name=DEMO_FILE_NAME, uploaded_by=None)
    for name in demo_imports.values_list("file", flat=True):
        if name:
            transaction.on_commit(partial(_storage().delete, name))
    # Events first, in one statement: deleting their import first would set each event's
    # source_import to NULL just before deleting the event.
    plan.events.all().delete()
    plan.delete()
    return True


def _storage():
    return Import._meta.get_field("file").storage


def store_events(plan: Plan, events: Iterable[DemoEvent], stored: list[str]) -> int:
    """Store the events as one import whose file is the events as CSV, so that the demo data is
    kept like any uploaded data: each row is checked by the import's rules and stored by its
    sink, as importing the file would. The stored file's name goes into `stored`."""
    mapping = {column: column for column in CSV_COLUMNS}
    record = Import.objects.create(
        plan=plan,
        original_name=DEMO_FILE_NAME,
        mapping=mapping,
        delimiter=",",
        encoding="utf-8",
        status=Import.Status.RUNNING,
        started_at=timezone.now(),
        message="Demo data made by manage.py load_demo.",
    )
    columns = Columns(CSV_COLUMNS, mapping)
    sink = sink_for(record)
    count = 0
    with tempfile.TemporaryFile() as raw, sink.open(_no_beat) as write:
        text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
        # Quoted and neutralised like every CSV the app writes (its cells never need the latter).
        writer = CsvWriter(text)
        writer.writerow(CSV_COLUMNS)
        chunks: list[Any] = []
        pending = 0
        for batch in itertools.batched(events, BATCH_SIZE):
            values = [_csv_row(item) for item in batch]
            writer.writerows(values)
            chunks.append(sink.prepare([_checked(columns, row) for row in values]))
            pending += len(values)
            if pending >= sink.batch_rows:
                write(chunks)
                count, chunks, pending = count + pending, [], 0
        if chunks:
            write(chunks)
            count += pending
        text.flush()
        text.detach()  # the CSV is in `raw` now; closing the wrapper would close it
        raw.seek(0)
        record.file.save(DEMO_FILE_NAME, File(raw), save=False)
        stored.append(record.file.name or "")
    record.size_bytes = record.file.size
    record.rows_read = count
    record.rows_imported = sink.inserted
    record.status = Import.Status.SUCCEEDED
    record.finished_at = timezone.now()
    record.save()
    return sink.inserted


def _no_beat() -> None:
    """The demo loads in one command, with no progress bar to feed."""


def _checked(columns: Columns, values: list[str]) -> tuple[str, ...]:
    row = columns.parse(values)
    if row is None:  # the simulation made an event no import would take
        raise ValueError(f"demo event refused: {columns.errors(values, 0)}")
    return row


def _csv_row(item: DemoEvent) -> list[str]:
    value = "" if item.value is None else str(item.value)
    when = item.occurred_at.isoformat()
    return [
        item.customer_id,
        when,
        item.event_type,
        value,
        item.segment,
        item.channel,
        item.event_id,
    ]
