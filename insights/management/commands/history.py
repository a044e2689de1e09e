"""`manage.py history SLUG [--json]`: each tested assumption through time (DOMAIN §10)."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandParser

from insights.management.arguments import add_plan_argument, plan_from
from insights.services.history import plan_history_json


class Command(BaseCommand):
    help = "Print every tested assumption's history (computing what is missing first)."

    def add_arguments(self, parser: CommandParser) -> None:
        add_plan_argument(parser)
        parser.add_argument("--json", action="store_true", help="print one JSON array (DOMAIN §10)")

    def handle(self, *args, **options) -> None:
        plan = plan_from(options)
        histories = plan_history_json(plan)
        if options["json"]:
            self.stdout.write(json.dumps(histories, indent=2, ensure_ascii=False))
            return
        for history in histories:
            points = history["points"]
            last = points[-1] if points else None
            drift = history["drift"]
            self.stdout.write(
                f"{history['statement']}: {len(points)} points"
                + (f", last {last['status']}" if last else ", no data")
                + (f"; {drift['message']}" if drift else "")
            )
