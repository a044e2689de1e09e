"""`manage.py clv SLUG [--json] [--as-of ISO] [--horizon-weeks H] [--event-type T]
[--segment S] [--channel C]`: customer lifetime value (DOMAIN §9)."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandParser

from insights.clv import DEFAULT_EVENT_TYPE, DEFAULT_HORIZON_WEEKS, customer_lifetime_value
from insights.management.arguments import (
    add_as_of_argument,
    add_plan_argument,
    as_of_from,
    plan_from,
)


def _weeks(text: str) -> int:
    weeks = int(text)
    if weeks < 1:
        raise ValueError
    return weeks


class Command(BaseCommand):
    help = "Fit the lifetime-value models (BG/NBD, Gamma-Gamma) on a plan's purchases."

    def add_arguments(self, parser: CommandParser) -> None:
        add_plan_argument(parser)
        parser.add_argument("--json", action="store_true", help="print one JSON object (§9)")
        add_as_of_argument(
            parser,
            help="fit on the events up to this date or moment (ISO 8601) instead of the latest "
            "event; before the data ends, the report adds the holdout test",
        )
        parser.add_argument(
            "--horizon-weeks",
            type=_weeks,
            default=DEFAULT_HORIZON_WEEKS,
            metavar="H",
            help=f"predict this many whole weeks ahead (default {DEFAULT_HORIZON_WEEKS})",
        )
        parser.add_argument("--event-type", default=DEFAULT_EVENT_TYPE, metavar="T")
        parser.add_argument("--segment", default="", metavar="S", help="only this segment")
        parser.add_argument("--channel", default="", metavar="C", help="only this channel")

    def handle(self, *args, **options) -> None:
        plan = plan_from(options)
        moment = as_of_from(options)
        report = customer_lifetime_value(
            plan.pk,
            as_of=moment,
            horizon_weeks=options["horizon_weeks"],
            event_type=options["event_type"],
            segment=options["segment"],
            channel=options["channel"],
        )
        if options["json"]:
            self.stdout.write(json.dumps(report, indent=2, ensure_ascii=False))
            return
        self.stdout.write(_summary(report))


def _summary(report: dict) -> str:
    if report["bgnbd"] is None:
        return f"No {report['event_type']} events to fit as of {report['as_of'] or 'now'}."
    fit = report["bgnbd"]
    lines = [
        f"As of {report['as_of']}: {report['customers']} customers, "
        f"{report['repeat_customers']} with repeat {report['event_type']} days.",
        f"BG/NBD: r {fit['r']:.4f}, alpha {fit['alpha']:.4f}, a {fit['a']:.4f}, "
        f"b {fit['b']:.4f} (log-likelihood {fit['log_likelihood']:.2f}).",
    ]
    spend = report["gamma_gamma"]
    if spend:
        lines.append(
            f"Gamma-Gamma: p {spend['p']:.4f}, q {spend['q']:.4f}, gamma {spend['gamma']:.4f} "
            f"(log-likelihood {spend['log_likelihood']:.2f})."
        )
    lines.append(
        f"Next {report['horizon_weeks']} weeks: {report['expected_purchases']:.1f} expected "
        f"purchase days, mean P(alive) {report['mean_p_alive']:.3f}"
        + (f", CLV {report['clv']:.2f}." if report["clv"] is not None else ".")
    )
    return "\n".join(lines)
