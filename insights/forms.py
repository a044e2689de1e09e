from __future__ import annotations

import re
from typing import Any

from django import forms
from django.forms.utils import flatatt
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from .metrics.spark import OPTIONAL, REQUIRED
from .metrics.spark import TABLE as SPARK_TABLE
from .models import EVENT_FIELDS, Import, PlanDataSource
from .services.imports.csvfiles import check_width
from .services.imports.rows import REQUIRED_FIELDS

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


SPARK_COLUMNS = (*REQUIRED, *OPTIONAL)


class DataSourceForm(forms.ModelForm):
    """Where the plan's events live. The access token itself is never entered here: only the
    name of the environment variable that holds it where Outside-In runs."""

    TOKEN_ENV = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

    class Meta:
        model = PlanDataSource
        fields = ["engine", "url", "table", "columns", "token_env"]
        labels = {"engine": "Where the events live", "columns": "Column names"}
        help_texts = {
            "url": "The cluster's Spark Connect address, e.g. sc://spark.example.com:15002; "
            "add /;use_ssl=true for a cluster that takes TLS (a token travels only over TLS, or "
            "to localhost).",
            "table": "A table (catalog.schema.events) or a path: parquet.`/data/events`.",
            "columns": 'Only where the table names a column differently, e.g. {"occurred_at": '
            '"ts", "event_type": "kind"}. The columns are customer_id, occurred_at, '
            "event_type, value, segment and channel.",
            "token_env": "The NAME of the environment variable, set where Outside-In runs, "
            "that holds the cluster's access token (e.g. NORTHWIND_SPARK_TOKEN). The token "
            "itself is never entered here, stored or written to any file.",
        }
        widgets = {"engine": forms.RadioSelect}

    def clean_columns(self) -> dict[str, str]:
        columns = self.cleaned_data.get("columns") or {}
        if not isinstance(columns, dict):
            raise forms.ValidationError('Write the names as {"our column": "the table\'s"}.')
        unknown = sorted(set(columns) - set(SPARK_COLUMNS))
        if unknown:
            raise forms.ValidationError(
                f"{', '.join(unknown)}: not a column of an event. The columns are "
                f"{', '.join(SPARK_COLUMNS)}."
            )
        if not all(isinstance(name, str) and name.strip() for name in columns.values()):
            raise forms.ValidationError("Each column needs the table's name for it.")
        return {ours: theirs.strip() for ours, theirs in columns.items()}

    def clean_token_env(self) -> str:
        name = self.cleaned_data.get("token_env", "").strip()
        if name and not self.TOKEN_ENV.fullmatch(name):
            # It may be the token itself, pasted here: never show it back on the page.
            self.data = {name: self.data.get(name) for name in self.data} | {"token_env": ""}
            raise forms.ValidationError(
                "Enter the name of an environment variable (letters, digits and _), not the "
                "token itself."
            )
        return name

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("engine") != PlanDataSource.Engine.SPARK:
            return data
        url, table = (data.get("url") or "").strip(), (data.get("table") or "").strip()
        if not url.startswith("sc://"):
            self.add_error("url", "Enter the cluster's address, starting with sc://.")
        if not SPARK_TABLE.fullmatch(table):
            self.add_error("table", "Enter a table name (catalog.schema.events) or a path.")
        data["url"], data["table"] = url, table
        return data
