"""`manage.py history SLUG [--json]`: each tested assumption through time (DOMAIN §10)."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError, CommandParser

from insights.services.history import plan_history_json
from planning.models import Plan


class Command(BaseCommand):
    help = "Print every tested assumption's history (computing what is missing first)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--json", action="store_true", help="print one JSON array (DOMAIN §10)")

    def handle(self, *args, slug: str, **options) -> None:
        plan = Plan.objects.filter(slug=slug).first()
        if plan is None:
            raise CommandError(f"There is no plan “{slug}”.")
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
