"""Parts of the plan file that other apps own (DOMAIN §6).

An app registers a `Section` for one top-level key (insights registers "data_source": where the
plan's events live), so that the file reads and writes it while `planning` never imports that
app. A section is exported after the plan's own keys, and only where it differs from its default
(the example file round-trips unchanged); on import it is checked with the rest of the file and
written last, and nothing is written when the file has any error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AbstractBaseUser

from planning.models import Plan


@dataclass(frozen=True)
class Section:
    key: str
    # The plan's relation to read with it (select_related), so that exporting costs no query.
    related: str
    # The section as the file writes it, or None where it is the default (then left out).
    export: Callable[[Plan], dict[str, Any] | None]
    # What is wrong with the file's value: (the key inside the section or "", the problem).
    problems: Callable[[Any], list[tuple[str, str]]]
    # Make the plan say what the file says; None means the key was left out: the default.
    write: Callable[[Plan, Any, AbstractBaseUser | None], None]


_sections: dict[str, Section] = {}


def register(section: Section) -> None:
    _sections[section.key] = section


def sections() -> list[Section]:
    return list(_sections.values())


def keys() -> tuple[str, ...]:
    return tuple(_sections)
