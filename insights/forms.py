from __future__ import annotations

from django import forms

from .models import EVENT_FIELDS, Import
from .services.imports import REQUIRED_FIELDS

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
        self.header = header
        choices = [("", "Keep as an attribute")] + [(f, FIELD_LABELS[f]) for f in EVENT_FIELDS]
        for index, name in enumerate(header):
            self.fields[f"column_{index}"] = forms.ChoiceField(
                label=name or f"Column {index + 1}",
                choices=choices,
                required=False,
                initial=mapping.get(name, ""),
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
