"""`manage.py import_plan FILE`: create or update a plan from its plan file (DOMAIN §6)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from planning.models import Assumption, Plan
from planning.planfile import PlanFileError, import_plan, load_plan_file


class Command(BaseCommand):
    help = "Create the plan a plan file describes, or update the plan with its slug to match it."
    # Tests hand in their own stdin, as Django's createsuperuser lets them.
    stealth_options = ("stdin",)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="the plan file (JSON); - reads standard input")

    def handle(self, *args: Any, **options: Any) -> None:
        source = options["file"]
        try:
            if source == "-":
                # The stream itself: only as much is read as a plan file may hold.
                data = load_plan_file(options.get("stdin") or sys.stdin)
            else:
                data = load_plan_file(Path(source))
            plan, created = import_plan(data)
        except PlanFileError as error:
            for message in error.errors:
                self.stderr.write(message)
            count = len(error.errors)
            where = "standard input" if source == "-" else source
            raise CommandError(
                f"{where}: {count} error{'s' if count != 1 else ''}; nothing was imported."
            ) from None
        verb = "Created" if created else "Updated"
        self.stdout.write(f"{verb} plan {plan.slug} “{plan.name}”: {_summary(plan)}.")


def _summary(plan: Plan) -> str:
    counts = {
        "stage": plan.stages.count(),
        "member": plan.memberships.count(),
        "choice": plan.choices.count(),
        "assumption": Assumption.objects.filter(choice__plan=plan).count(),
        "BT initiative": plan.bt_initiatives.count(),
    }
    return ", ".join(f"{n} {noun}{'' if n == 1 else 's'}" for noun, n in counts.items())
