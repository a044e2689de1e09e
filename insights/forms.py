from __future__ import annotations

from typing import Any

from django import forms
from django.forms.utils import flatatt
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from .models import EVENT_FIELDS, Import
from .services.imports import REQUIRED_FIELDS, check_width

FIELD_LABELS = {
    "customer_id": "Customer id (required)",
    "occurred_at": "Occurred at (required)",
    "event_type": "Event type (required)",
    "value": "Value",
    "segment": "Segment",
    "channel": "Channel",
    "event_id": "Event id",
}


class UploadForm(forms.Form):
    file = forms.FileField(
        label="Events file",
        help_text="CSV with a header line (comma, semicolon or tab), UTF-8. Columns: "
        "customer_id, occurred_at, event_type, and optionally value, segment, channel, event_id.",
    )


class ColumnSelect(forms.Select):
    """The same <select> as Django's, put together in Python: a file may have hundreds of
    columns, and a template for every option of each made the page take seconds."""

    def render(
        self, name: str, value: Any, attrs: dict | None = None, renderer: Any = None
    ) -> SafeString:
        chosen = "" if value is None else str(value)
        options = format_html_join(
            "",
            '<option value="{}"{}>{}</option>',
            ((v, " selected" if str(v) == chosen else "", label) for v, label in self.choices),
        )
        attributes = flatatt(self.build_attrs(self.attrs, attrs))
        return format_html('<select name="{}"{}>{}</select>', name, attributes, options)


class MappingForm(forms.Form):
    """One choice per column of the file: which event field it is, or an attribute."""

    mode = forms.ChoiceField(
        label="If some rows have errors",
        choices=[
            (Import.Mode.ALL_OR_NOTHING, "Import nothing, so I can fix the file (all or nothing)"),
            (
                Import.Mode.SKIP_INVALID,
                "Import the valid rows and let me download the rejected ones",
            ),
        ],
        initial=Import.Mode.ALL_OR_NOTHING,
        widget=forms.RadioSelect,
    )

    def __init__(self, *args, header: list[str], mapping: dict[str, str], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # One field a column: never more than IMPORT_MAX_COLUMNS of them (FileRejected says so).
        check_width(len(header))
        self.header = header
        choices = [("", "Keep as an attribute")] + [(f, FIELD_LABELS[f]) for f in EVENT_FIELDS]
        for index, name in enumerate(header):
            self.fields[f"column_{index}"] = forms.ChoiceField(
                label=name or f"Column {index + 1}",
                choices=choices,
                required=False,
                initial=mapping.get(name, ""),
                widget=ColumnSelect,
            )

    def column_fields(self):
        return [self[f"column_{i}"] for i in range(len(self.header))]

    def clean(self):
        cleaned = super().clean()
        mapping: dict[str, str] = {}
        for index, name in enumerate(self.header):
            target = cleaned.get(f"column_{index}")
            if not target:
                continue
            if target in mapping.values():
                source = next(s for s, t in mapping.items() if t == target)
                raise forms.ValidationError(
                    f"“{name}” and “{source}” are both mapped onto {FIELD_LABELS[target]}; "
                    "choose one."
                )
            mapping[name] = target
        missing = [FIELD_LABELS[f] for f in REQUIRED_FIELDS if f not in mapping.values()]
        if missing:
            raise forms.ValidationError(f"Choose a column for {', '.join(missing)}.")
        cleaned["mapping"] = mapping
        return cleaned
