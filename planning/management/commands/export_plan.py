"""`manage.py export_plan SLUG [--output FILE]`: write a plan as its plan file (DOMAIN §6)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from planning.models import Plan
from planning.planfile import export_plan


class Command(BaseCommand):
    help = "Write a plan as its plan file (JSON), to standard output or a file."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", help="the plan's slug, e.g. fy2027")
        parser.add_argument("--output", "-o", metavar="FILE", help="write here, not to stdout")

    def handle(self, *args: Any, **options: Any) -> None:
        slug = options["slug"]
        plan = Plan.objects.filter(slug=slug).first()
        if plan is None:
            raise CommandError(f"No plan with the slug “{slug}”.")
        text = json.dumps(export_plan(plan), indent=2, ensure_ascii=False) + "\n"
        if options["output"]:
            Path(options["output"]).write_text(text, encoding="utf-8")
            self.stdout.write(f"Wrote plan {slug} to {options['output']}.")
        else:
            self.stdout.write(text, ending="")
