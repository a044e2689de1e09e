"""E-mail subjects that cannot fail, whatever the names put in them hold."""

from __future__ import annotations

import unicodedata


def subject_line(text: str) -> str:
    """`text` as one line: every run of spaces, line breaks and control characters becomes one
    space. Python's e-mail refuses a subject with a line break (Django's BadHeaderError), and
    such a send fails the same way on every retry: a plan or person named before names were
    checked would lose its e-mails for good."""
    visible = "".join(
        " " if unicodedata.category(char) in {"Cc", "Zl", "Zp"} else char for char in text
    )
    return " ".join(visible.split())
