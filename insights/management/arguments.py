"""What several insights commands take alike: the plan by its slug, and `--as-of`. Each command
adds them with `add_…_argument(parser)` and reads them back from its options with `…_from`."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.core.management.base import CommandError, CommandParser

from insights.services.imports.dates import parse_occurred_at
from planning.models import Plan


def add_plan_argument(parser: CommandParser) -> None:
    parser.add_argument("slug", help="the plan's slug")


def plan_from(options: dict[str, Any]) -> Plan:
    slug = options["slug"]
    plan = Plan.objects.filter(slug=slug).first()
    if plan is None:
        raise CommandError(f"There is no plan “{slug}”.")
    return plan


def add_as_of_argument(parser: CommandParser, help: str) -> None:
    """`--as-of ISO`; `help` says what the command does as of that moment."""
    parser.add_argument("--as-of", help=help)


def as_of_from(options: dict[str, Any]) -> dt.datetime | None:
    """The moment `--as-of` names, or None (the latest data) without it."""
    text = options["as_of"]
    if not text:
        return None
    try:
        return parse_occurred_at(text)
    except ValueError:
        raise CommandError(f"--as-of takes an ISO 8601 date, not “{text}”.") from None
