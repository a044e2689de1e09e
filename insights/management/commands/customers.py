"""`manage.py customers SLUG [--json] [--period month|week] [--as-of ISO] [--segment S]
[--channel C] [--event-type T]`: the Customers figures (DOMAIN §8)."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError, CommandParser

from insights.management.arguments import (
    add_as_of_argument,
    add_plan_argument,
    as_of_from,
    plan_from,
)
from insights.services.customers import (
    DEFAULT_EVENT_TYPE,
    CustomersError,
    compute_customers,
)
from planning.models import Period


class Command(BaseCommand):
    help = "Print a plan's customer figures: periods, cohort retention and the funnel."

    def add_arguments(self, parser: CommandParser) -> None:
        add_plan_argument(parser)
        parser.add_argument("--json", action="store_true", help="print one JSON object (DOMAIN §8)")
        parser.add_argument(
            "--period", choices=Period.values, help="month or week (default: the plan's period)"
        )
        add_as_of_argument(
            parser, help="as of this date or moment (ISO 8601) instead of the plan's latest event"
        )
        parser.add_argument("--segment", default="", help="only the events of this segment")
        parser.add_argument("--channel", default="", help="only the events of this channel")
        parser.add_argument(
            "--event-type",
            default=DEFAULT_EVENT_TYPE,
            help=f"the event type of cohort retention (default {DEFAULT_EVENT_TYPE})",
        )

    def handle(self, *args, **options) -> None:
        plan = plan_from(options)
        moment = as_of_from(options)
        try:
            figures = compute_customers(
                plan,
                as_of=moment,
                period=options["period"],
                segment=options["segment"],
                channel=options["channel"],
                event_type=options["event_type"],
            )
        except CustomersError as error:
            raise CommandError(str(error)) from None
        if options["json"]:
            self.stdout.write(json.dumps(figures.as_json(), indent=2, ensure_ascii=False))
            return
        if figures.as_of is None:
            self.stdout.write("The plan has no customer data yet.")
            return
        self.stdout.write(f"As of {figures.as_of.isoformat()}, per {figures.period}:")
        self.stdout.write(
            f"{'period':<12} {'active':>8} {'new':>8} {'return':>8} {'resurr':>8} {'dormant':>8}"
        )
        for p in figures.periods:
            mark = " (partial)" if p.partial else ""
            self.stdout.write(
                f"{p.start.isoformat():<12} {p.active:>8} {p.new:>8} {p.returning:>8} "
                f"{p.resurrecting:>8} {p.dormant:>8}{mark}"
            )
        funnel = figures.funnel
        if funnel is not None:
            steps = ", ".join(f"{s.stage} {s.reached.customers}" for s in funnel.steps)
            self.stdout.write(
                f"Funnel ({funnel.window_days} days): {funnel.entrants} entrants; {steps}"
            )
