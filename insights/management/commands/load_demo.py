"""`manage.py load_demo [--reset]`: the Northwind Outfitters demo plan, its users and events."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Max, Min

from insights.demo import DEMO_CUSTOMERS, DEMO_PASSWORD, DEMO_URL, DemoResult, load_demo
from planning.models import Assumption


class Command(BaseCommand):
    help = (
        "Load the demo: Northwind Outfitters' FY2027 plan, its members and 18 months of customer "
        "events. Running it again changes nothing; --reset deletes the demo plan and loads it anew."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--reset",
            action="store_true",
            help="delete the demo plan (with its events) and load it again",
        )
        parser.add_argument(
            "--customers",
            type=int,
            default=DEMO_CUSTOMERS,
            help=f"how many customers to simulate (default {DEMO_CUSTOMERS:,})",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["customers"] < 1:
            raise CommandError("--customers must be at least 1.")
        # The demo password is published: only a development machine (DEBUG on) may use it.
        published = settings.DEBUG
        result = load_demo(
            reset=options["reset"], customers=options["customers"], published_password=published
        )
        self.stdout.write(self._summary(result))
        self.stdout.write("")
        if published:
            self.stdout.write(f"Demo logins, all with the password {DEMO_PASSWORD}:")
        else:
            self.stdout.write(
                "Demo logins. DEBUG is off, so the published demo password is not used: each "
                "new login got its own random password, shown here this once only."
            )
        self._write_logins(result, with_passwords=not published)
        if not all(login.created for login in result.logins):
            self.stdout.write("Users that were already there keep the password they had.")
        self.stdout.write("")
        self.stdout.write(f"Open {DEMO_URL} (`make run` serves it).")

    def _write_logins(self, result: DemoResult, with_passwords: bool) -> None:
        width = max(len(login.username) for login in result.logins)
        name_width = max(len(login.name) for login in result.logins)
        role_width = max(len(login.role) for login in result.logins)
        for login in result.logins:
            line = f"  {login.username:<{width}}  {login.name:<{name_width}}  {login.role}"
            if with_passwords and login.password:
                line = f"{line:<{width + name_width + role_width + 6}}  {login.password}"
            self.stdout.write(line)

    def _summary(self, result: DemoResult) -> str:
        plan = result.plan
        span = plan.events.aggregate(first=Min("occurred_at"), last=Max("occurred_at"))
        dates = (
            f" from {span['first']:%Y-%m-%d} to {span['last']:%Y-%m-%d}" if span["first"] else ""
        )
        choices = plan.choices.count()
        assumptions = Assumption.objects.filter(choice__plan=plan).count()
        what = f"{choices} choices, {assumptions} assumptions, {result.events:,} events{dates}"
        if result.created:
            return (
                f"Loaded the demo plan “{plan.name}” ({plan.slug}): {what}, "
                f"in {result.seconds:.1f} s."
            )
        return (
            f"The demo plan “{plan.name}” ({plan.slug}) is already there ({what}): left as it is. "
            "Use --reset to delete it and load it again."
        )
