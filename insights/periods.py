"""Periods (DOMAIN §8): a plan's figures and histories are cut into calendar months or ISO weeks
(Monday to Sunday), in UTC. The one place that knows where a period starts and ends.

Plain Python, no Django: `insights.drift` (run by bench/drift.py without Django) uses it too.
The period names are `planning.models.Period`'s values.
"""

from __future__ import annotations

import calendar
import datetime as dt

WEEK = "week"  # Period.WEEK; any other period is a month
MICROSECOND = dt.timedelta(microseconds=1)


def first_day(day: dt.date, period: str) -> dt.date:
    """The first day of the period holding `day`: its ISO week's Monday, or its month's 1st."""
    if period == WEEK:
        return day - dt.timedelta(days=day.weekday())
    return day.replace(day=1)


def period_start(moment: dt.datetime, period: str) -> dt.date:
    """The first day of the period (UTC) that holds `moment`."""
    return first_day(moment.astimezone(dt.UTC).date(), period)


def next_period_start(start: dt.date, period: str) -> dt.date:
    if period == WEEK:
        return start + dt.timedelta(days=7)
    days = calendar.monthrange(start.year, start.month)[1]
    return start.replace(day=1) + dt.timedelta(days=days)


def midnight(day: dt.date) -> dt.datetime:
    """The first moment of `day`, UTC."""
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)


def last_moment(start: dt.date, period: str) -> dt.datetime:
    """The last moment of the period starting on `start`: the next one's start − 1 µs."""
    return midnight(next_period_start(start, period)) - MICROSECOND
