"""The Customers page's filters, as the URL carries them, and the settings they make."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

from django import forms

from planning.models import Period, Plan

from ..clv import DEFAULT_HORIZON_WEEKS
from ..services import clv_jobs
from ..services.customer_panels import FilterOptions
from ..services.customers import DEFAULT_EVENT_TYPE, DEFAULT_WINDOW_DAYS

MONTH = re.compile(r"^(\d{4})-(\d{2})$")


class CustomersFilter(forms.Form):
    """The page's filters, as the URL carries them. Each bad value is said in words; the page
    answers 400 with the form and no figures."""

    period = forms.ChoiceField(
        label="Per",
        required=False,
        choices=Period.choices,
        error_messages={"invalid_choice": "“%(value)s” is not a period: choose month or week."},
    )
    as_of = forms.DateField(
        label="Data up to",
        required=False,
        help_text="The end of that day (UTC); empty: the latest data.",
        error_messages={"invalid": "Give the date as YYYY-MM-DD, e.g. 2026-06-30."},
        widget=forms.DateInput(attrs={"type": "date"}),
    )
    segment = forms.ChoiceField(
        label="Segment",
        required=False,
        error_messages={"invalid_choice": "There is no segment “%(value)s” in this plan's data."},
    )
    channel = forms.ChoiceField(
        label="Channel",
        required=False,
        error_messages={"invalid_choice": "There is no channel “%(value)s” in this plan's data."},
    )
    event_type = forms.ChoiceField(
        label="Purchases are",
        required=False,
        help_text="The event type of cohorts, repeat rate and lifetime value.",
        error_messages={
            "invalid_choice": "There is no event type “%(value)s” in this plan's data."
        },
    )
    window = forms.IntegerField(
        label="Funnel window (days)",
        required=False,
        min_value=1,
        max_value=3650,
        error_messages={
            "invalid": "The funnel window is a whole number of days.",
            "min_value": "The funnel window is at least 1 day.",
            "max_value": "The funnel window is at most 3,650 days.",
        },
    )
    entry_from = forms.CharField(label="Entered from", required=False, max_length=10)
    entry_to = forms.CharField(label="to", required=False, max_length=10)
    by = forms.ChoiceField(
        label="Side by side by",
        required=False,
        choices=[("channel", "Channel"), ("segment", "Segment")],
        error_messages={"invalid_choice": "Compare the funnel by segment or by channel."},
    )
    horizon = forms.IntegerField(
        label="Horizon (weeks)",
        required=False,
        min_value=1,
        max_value=520,
        error_messages={
            "invalid": "The horizon is a whole number of weeks.",
            "min_value": "The horizon is at least 1 week.",
            "max_value": "The horizon is at most 520 weeks (ten years).",
        },
    )

    def __init__(self, data: Any, *, plan: Plan, options: FilterOptions) -> None:
        super().__init__(data)
        self.plan = plan
        for name, kind, everyone in (
            ("segment", "segments", "All segments"),
            ("channel", "channels", "All channels"),
        ):
            self.fields[name].choices = [  # type: ignore[attr-defined]
                ("", everyone),
                *((value, f"{value} ({count:,})") for value, count in getattr(options, kind)),
            ]
        types = options.values("event_types")
        if DEFAULT_EVENT_TYPE not in types:
            types = [DEFAULT_EVENT_TYPE, *types]
        self.fields["event_type"].choices = [(t, t) for t in types]  # type: ignore[attr-defined]

    def _entry(self, name: str) -> dt.date | None:
        text = (self.cleaned_data.get(name) or "").strip()
        if not text:
            return None
        if match := MONTH.match(text):
            year, month = int(match[1]), int(match[2])
            if 1 <= month <= 12 and 1 < year < 9999:
                return dt.date(year, month, 1)
        else:
            try:
                return dt.date.fromisoformat(text)
            except ValueError:
                pass
        raise forms.ValidationError(f"“{text}” is not a month (YYYY-MM) or a date (YYYY-MM-DD).")

    def clean_entry_from(self) -> dt.date | None:
        return self._entry("entry_from")

    def clean_entry_to(self) -> dt.date | None:
        return self._entry("entry_to")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        low, high = cleaned.get("entry_from"), cleaned.get("entry_to")
        if low and high and low > high:
            self.add_error("entry_to", "The funnel's entry range ends before it starts.")
        return cleaned

    @property
    def settings(self) -> Settings:
        data = self.cleaned_data
        as_of = data.get("as_of")
        return Settings(
            period=data.get("period") or self.plan.period,
            as_of=(dt.datetime.combine(as_of, dt.time.max, tzinfo=dt.UTC) if as_of else None),
            segment=data.get("segment") or "",
            channel=data.get("channel") or "",
            event_type=data.get("event_type") or DEFAULT_EVENT_TYPE,
            window=data.get("window") or DEFAULT_WINDOW_DAYS,
            entry_from=data.get("entry_from"),
            entry_to=data.get("entry_to"),
            by=data.get("by") or "channel",
            horizon=data.get("horizon") or DEFAULT_HORIZON_WEEKS,
        )


@dataclass(frozen=True)
class Settings:
    period: str
    as_of: dt.datetime | None
    segment: str
    channel: str
    event_type: str
    window: int
    entry_from: dt.date | None
    entry_to: dt.date | None
    by: str
    horizon: int

    @property
    def value_request(self) -> clv_jobs.ValueRequest:
        return clv_jobs.ValueRequest(
            as_of=self.as_of,
            horizon_weeks=self.horizon,
            event_type=self.event_type,
            segment=self.segment,
            channel=self.channel,
        )
