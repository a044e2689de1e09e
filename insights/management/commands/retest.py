"""`manage.py retest SLUG [--json] [--as-of DATE]`: re-test every tested assumption now."""

from __future__ import annotations

import datetime as dt
import json

from django.core.management.base import BaseCommand, CommandParser

from insights.management.arguments import (
    add_as_of_argument,
    add_plan_argument,
    as_of_from,
    plan_from,
)
from insights.models import AssumptionRun
from insights.services.retests import retest_plan, run_as_json


class Command(BaseCommand):
    help = "Re-test every tested assumption of a plan against its customer data."

    def add_arguments(self, parser: CommandParser) -> None:
        add_plan_argument(parser)
        parser.add_argument("--json", action="store_true", help="print one JSON array (DOMAIN §7)")
        add_as_of_argument(
            parser, help="evaluate as of this date or moment (ISO 8601) instead of the latest event"
        )

    def handle(self, *args, **options) -> None:
        plan = plan_from(options)
        moment = as_of_from(options)
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
