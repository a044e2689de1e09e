"""`manage.py retest SLUG [--json] [--as-of DATE]`: re-test every tested assumption now."""

from __future__ import annotations

import datetime as dt
import json

from django.core.management.base import BaseCommand, CommandError, CommandParser

from insights.models import AssumptionRun
from insights.services.imports import parse_occurred_at
from insights.services.retests import retest_plan, run_as_json
from planning.models import Plan


class Command(BaseCommand):
    help = "Re-test every tested assumption of a plan against its customer data."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--json", action="store_true", help="print one JSON array (DOMAIN §7)")
        parser.add_argument(
            "--as-of",
            help="evaluate as of this date or moment (ISO 8601) instead of the latest event",
        )

    def handle(self, *args, slug: str, as_of: str | None, **options) -> None:
        plan = Plan.objects.filter(slug=slug).first()
        if plan is None:
            raise CommandError(f"There is no plan “{slug}”.")
        moment = None
        if as_of:
            try:
                moment = parse_occurred_at(as_of)
            except ValueError:
                raise CommandError(f"--as-of takes an ISO 8601 date, not “{as_of}”.") from None
        runs = retest_plan(plan, as_of=moment, trigger=AssumptionRun.Trigger.COMMAND)
        if options["json"]:
            self.stdout.write(_dumps([run_as_json(run) for run in runs]))
            return
        for run in runs:
            mark = "changed" if run.changed else "same"
            self.stdout.write(
                f"{run.status:<18} {mark:<8} {run.assumption.statement} "
                f"({run.assumption.format_value(run.observed)})"
            )
        self.stdout.write(f"{len(runs)} assumptions re-tested.")


def _dumps(data: object) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False, default=_default)


def _default(value: object) -> str:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    raise TypeError(type(value).__name__)
