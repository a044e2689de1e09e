"""Loading a plan file: its text turned into JSON, within the file-level limits (bytes, depth,
number length, counts, NUL characters), each refusal naming its limit. What the objects in it
may hold is the forms' business (reading.py)."""

from __future__ import annotations

import itertools
import json
import math
import re
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

from django.conf import settings

from planning.forms import plan_file_too_large, size_in_words


class PlanFileError(Exception):
    """A plan file that cannot be imported; `errors` lists every problem found, each located."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


def load_plan_file(source: str | bytes | Path | IO[Any]) -> dict[str, Any]:
    """Parse a plan file given as a path, an open file or its JSON text; PlanFileError says
    what is wrong. Its size and depth are checked before it is parsed: a file is read whole,
    in the web request too."""
    raw = _read_bounded(source)
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8-sig")
        except UnicodeDecodeError as error:
            raise PlanFileError([f"the file is not UTF-8 text (byte {error.start})"]) from None
    raw = raw.removeprefix("\ufeff")
    _check_depth(raw)
    try:
        data = json.loads(
            raw, parse_constant=_reject_constant, parse_int=_parse_int, parse_float=_parse_float
        )
    except json.JSONDecodeError as error:
        raise PlanFileError(
            [f"invalid JSON at line {error.lineno}, column {error.colno}: {error.msg}"]
        ) from None
    except _NotJSON as error:
        raise PlanFileError([f"invalid JSON: {error}"]) from None
    except _TooLong as error:
        raise PlanFileError([str(error)]) from None
    except RecursionError:  # only with PLANFILE_MAX_DEPTH set beyond what Python can nest
        raise PlanFileError(["This plan file nests lists and objects too deep to read."]) from None
    if not isinstance(data, dict):
        raise PlanFileError([f"the top level must be an object {{…}}, not {kind_of(data)}"])
    return data


def _read_bounded(source: str | bytes | Path | IO[Any]) -> str | bytes:
    """The file's content, never more than PLANFILE_MAX_BYTES of it read into memory."""
    limit = settings.PLANFILE_MAX_BYTES
    if isinstance(source, bytes):
        check_plan_file_size(len(source))
        return source
    if isinstance(source, str) and not _is_file(source):
        # Text is never shorter in UTF-8 than in characters: the cheap test first.
        check_plan_file_size(len(source) if len(source) > limit else len(source.encode()))
        return source
    if isinstance(source, str | Path):
        path = Path(source)
        try:
            check_plan_file_size(path.stat().st_size)
            with path.open("rb") as file:
                content: str | bytes = file.read(limit + 1)
        except OSError as error:
            raise PlanFileError([f"cannot read {source}: {error.strerror}"]) from None
    else:
        content = source.read(limit + 1)
    if len(content) > limit:  # a file that grew, a pipe, standard input
        words = size_in_words(limit)
        raise PlanFileError([f"This plan file is more than {words}; at most {words} are allowed."])
    if isinstance(content, str):  # a text stream reads characters; the limit counts bytes
        check_plan_file_size(len(content.encode()))
    return content


def check_plan_file_size(size: int) -> None:
    """Refuse a plan file of more than PLANFILE_MAX_BYTES, naming both sizes (in the words the
    new-plan form uses for an upload)."""
    if problem := plan_file_too_large(size):
        raise PlanFileError([problem])


# A JSON string, quotes and escapes included: what the depth count skips.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_DEPTH_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def _check_depth(text: str) -> None:
    """Refuse nesting deeper than PLANFILE_MAX_DEPTH before parsing: Python's parser recurses
    once per level and fails past about a thousand. A plan file needs 7 levels."""
    limit = settings.PLANFILE_MAX_DEPTH
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    if len(brackets) <= limit:
        return
    depth = max(itertools.accumulate(map(_DEPTH_STEP.__getitem__, brackets)))
    if depth > limit:
        raise PlanFileError(
            [
                f"This plan file nests lists and objects {depth:,} levels deep; "
                f"at most {limit:,} levels are allowed."
            ]
        )


def _is_file(value: str) -> bool:
    # Text with a brace or a line break is JSON, not a file name (and may be too long for one).
    if "\n" in value or "{" in value or len(value) > 4096:
        return False
    return Path(value).is_file()


class _NotJSON(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    # Python's json accepts NaN and Infinity, which JSON itself does not.
    raise _NotJSON(f"{name} is not a JSON value")


class _TooLong(ValueError):
    pass


# Far more than any number a plan holds (an amount, a threshold, a day count); Python itself
# refuses to read whole numbers of more than 4,300 digits, with an error instead of a message.
MAX_NUMBER_CHARS = 100


def _check_number(text: str) -> None:
    if len(text) > MAX_NUMBER_CHARS:
        raise _TooLong(
            f"The number {text[:20]}… in this plan file is {len(text):,} characters long; "
            f"at most {MAX_NUMBER_CHARS} are allowed."
        )


def _parse_int(text: str) -> int:
    _check_number(text)
    return int(text)


def _parse_float(text: str) -> float:
    _check_number(text)
    value = float(text)
    if not math.isfinite(value):  # 1e999: a float cannot hold it
        raise _TooLong(f"The number {text} in this plan file is too large.")
    return value


def kind_of(value: Any) -> str:
    """A JSON value's type, in words."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | Decimal):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the string {quoted(value)}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def quoted(value: Any) -> str:
    """A value as an error message echoes it."""
    if not isinstance(value, str):
        return kind_of(value)
    # Echo enough of a long value to recognise it, not a whole paragraph.
    return f'"{value[:60]}…"' if len(value) > 60 else f'"{value}"'


def check_plan_data(data: Any) -> None:
    """The limits on a whole file, checked before any of its objects: an object at the top,
    no more items than allowed, and no NUL character anywhere."""
    if not isinstance(data, dict):
        raise PlanFileError([f"the top level must be an object {{…}}, not {kind_of(data)}"])
    _check_counts(data)
    if nul := _nul_errors(data, ""):
        raise PlanFileError(nul)


def _count(value: Any) -> int:
    return len(value) if isinstance(value, list | dict) else 0


def _check_counts(data: dict[str, Any]) -> None:
    """Refuse a plan larger than the limits before reading it item by item: thousands of
    choices would each be checked, written and then drawn on one board."""
    written = data.get("choices")
    choices: list[Any] = written if isinstance(written, list) else []
    assumptions = sum(_count(c.get("assumptions")) for c in choices if isinstance(c, dict))
    counts = [
        ("stages", _count(data.get("stages")), settings.PLANFILE_MAX_STAGES),
        ("event types", _count(data.get("event_map")), settings.PLANFILE_MAX_EVENT_TYPES),
        ("members", _count(data.get("members")), settings.PLANFILE_MAX_MEMBERS),
        ("choices", len(choices), settings.PLANFILE_MAX_CHOICES),
        ("assumptions", assumptions, settings.PLANFILE_MAX_ASSUMPTIONS),
        ("BT initiatives", _count(data.get("bt_initiatives")), settings.PLANFILE_MAX_INITIATIVES),
    ]
    errors = [
        f"This plan file has {count:,} {noun}; at most {limit:,} are allowed."
        for noun, count, limit in counts
        if count > limit
    ]
    if errors:
        raise PlanFileError(errors)


NUL_REFUSED = "holds a character we cannot store (a NUL byte, written \\u0000)"


def _nul_errors(value: Any, path: str) -> list[str]:
    """Where the file holds a NUL character: PostgreSQL text cannot store one, and the file's
    JSON can carry it anywhere, as \\u0000."""
    if isinstance(value, str):
        return [f"{path}: {NUL_REFUSED}"] if "\x00" in value else []
    if isinstance(value, list):
        return [e for i, item in enumerate(value) for e in _nul_errors(item, f"{path}[{i}]")]
    if not isinstance(value, dict):
        return []
    errors: list[str] = []
    for key, item in value.items():
        where = f"{path}.{key}" if path else str(key)
        if "\x00" in str(key):
            shown = where.replace("\x00", "\\u0000")
            errors.append(f"{shown}: {NUL_REFUSED}")
        else:
            errors += _nul_errors(item, where)
    return errors
