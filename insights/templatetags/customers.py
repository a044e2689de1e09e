"""The Customers figures in any template: the stage strip that heads the board
(`{% load customers %}{% stage_strip plan %}`, so that `planning` shows it without importing
`insights`), and the few number formats the Customers page uses."""

from __future__ import annotations

from typing import Any

from django import template

from planning.models import Plan

from ..services.customer_panels import board_strip, strip_context

register = template.Library()


@register.inclusion_tag("insights/_stage_strip.html")
def stage_strip(plan: Plan) -> dict[str, Any]:
    """The board's strip: the plan's period, its latest data, no filter (cached per data
    version: one query when cached). From a Spark cluster and not cached yet, the board asks
    for it apart (insights:stage_strip) and shows meanwhile that it is being read."""
    return strip_context(plan, board_strip(plan, wait=False))


def _number(value: Any, spec: str, *, scale: float = 1, suffix: str = "") -> str:
    """`value` × `scale` formatted by `spec`, then `suffix`; None or "" → “—”."""
    if value is None or value == "":
        return "—"
    return format(scale * float(value), spec) + suffix


@register.filter
def thousands(value: Any) -> str:
    """12345 → “12,345”; None → “—”."""
    return _number(value, ",.0f")


@register.filter
def percent(value: Any, places: int = 1) -> str:
    """0.2345 → “23.5%”; None → “—”."""
    return _number(value, f".{int(places)}f", scale=100, suffix="%")


@register.filter
def money(value: Any) -> str:
    """1234.5 → “1,234.50”; None → “—”."""
    return _number(value, ",.2f")


@register.filter
def decimal(value: Any, places: int = 1) -> str:
    """1234.56 → “1,234.6”; None → “—”."""
    return _number(value, f",.{int(places)}f")


@register.filter
def signed(value: Any, places: int = 0) -> str:
    """+120, −35 (a real minus sign), 0."""
    if value is None:
        return ""
    number = float(value)
    text = f"{abs(number):,.{int(places)}f}"
    if round(number, int(places)) == 0:
        return text
    return ("+" if number > 0 else "−") + text


@register.filter
def field_label(form: Any, name: str) -> str:
    """A form field's label by name (a form's errors are keyed by name)."""
    field = form.fields.get(name)
    return str(field.label) if field is not None and field.label else name
