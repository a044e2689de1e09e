"""The plan file's "data_source" (DOMAIN §6, issue #14): where the plan's events live, written
and read through planning's file sections (planning.planfile.sections), never its token.

    "data_source": {"engine": "spark", "url": "sc://spark.example.com:15002",
                    "table": "lake.sales.events", "columns": {"occurred_at": "ts"},
                    "token_env": "NORTHWIND_SPARK_TOKEN"}

Imported events, the default, are left out of the file. The token never goes into a file: only
the name of the environment variable that holds it where Outside-In runs (`token_env`). A file
is checked with the data source form's rules; writing a changed source checks the cluster, as
saving it on its page does, and keeps it even when the cluster does not answer (shown as failing).
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib.auth.models import AbstractBaseUser

from planning.models import Plan
from planning.planfile.loading import kind_of
from planning.planfile.sections import Section

from .forms import DataSourceForm
from .models import PlanDataSource
from .services.sources import SETTINGS, data_source_of, save_data_source

KEYS = ("engine", "url", "table", "columns", "token_env")
SECRET_KEYS = ("token", "access_token", "password", "secret")


def export(plan: Plan) -> dict[str, Any] | None:
    try:
        record: PlanDataSource = plan.data_source  # type: ignore[attr-defined]
    except PlanDataSource.DoesNotExist:
        return None
    if not record.on_spark:
        return None
    data: dict[str, Any] = {"engine": record.engine, "url": record.url, "table": record.table}
    if record.columns:
        data["columns"] = dict(record.columns)
    if record.token_env:
        data["token_env"] = record.token_env
    return data


def _form(value: dict[str, Any]) -> DataSourceForm:
    columns = value.get("columns") or {}
    return DataSourceForm(
        data={
            "engine": value.get("engine") or PlanDataSource.Engine.IMPORTED,
            "url": value.get("url") or "",
            "table": value.get("table") or "",
            "columns": json.dumps(columns) if isinstance(columns, dict) else "[]",
            "token_env": value.get("token_env") or "",
        }
    )


def problems(value: Any) -> list[tuple[str, str]]:
    if not isinstance(value, dict):
        return [("", f"must be an object {{…}}, not {kind_of(value)}")]
    found: list[tuple[str, str]] = []
    for key in value:
        if key.lower() in SECRET_KEYS:
            found.append(
                (
                    key,
                    "a plan file never holds the cluster's token: name the environment variable "
                    'that holds it where Outside-In runs, as "token_env"',
                )
            )
        elif key not in KEYS:
            found.append(("", f'unknown key "{key}"; the keys there are {", ".join(KEYS)}'))
    for key in ("engine", "url", "table", "token_env"):
        if value.get(key) is not None and not isinstance(value[key], str):
            found.append((key, f"must be a string, not {kind_of(value[key])}"))
    if found:
        return found
    form = _form(value)
    if not form.is_valid():
        for name, errors in form.errors.items():
            found += [(name if name != "__all__" else "", str(error)) for error in errors]
    return found


def write(plan: Plan, value: dict[str, Any] | None, actor: AbstractBaseUser | None) -> None:
    record = data_source_of(plan)
    if value is None and not record.pk:
        return  # left out, and never set: the default stays as it is
    form = _form(value or {})
    assert form.is_valid()  # `problems` has said everything wrong with it
    wanted = {name: form.cleaned_data[name] for name in SETTINGS}
    if wanted["engine"] != PlanDataSource.Engine.SPARK:
        wanted.update(url="", table="", columns={}, token_env="")
    if {name: getattr(record, name) for name in SETTINGS} == wanted:
        return  # the file says what the plan has: nothing to check or record
    for name, setting in wanted.items():
        setattr(record, name, setting)
    save_data_source(record, user=actor)


SECTION = Section("data_source", "data_source", export, problems, write)
