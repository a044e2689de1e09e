"""Importing event files into a plan's data (DOMAIN §4), in parts:

- `csvfiles`: the file as CSV (its encoding, delimiter and header, rows with their line numbers,
  the preview) and the one way the app writes CSV;
- `rows`: the row rules, one table: each field's value → the text stored, or the reason not;
  `dates` says which ISO form a date written another way should take;
- `reading`: the file's rows parsed in a thread of their own, handed on in batches;
- `sinks`: storing events (PostgreSQL `COPY`, SQLite batches), for imports and the demo alike;
- `progress`: the progress bar and the heartbeat that tells a live import from a dead one;
- `engine`: an import from claim to finish, in one transaction.

What the rest of the app uses is named here.
"""

from __future__ import annotations

from .csvfiles import FileRejected, Preview, preview_file
from .engine import create_import, run_import
from .progress import mark_stalled_imports, progress_key, read_progress

__all__ = [
    "FileRejected",
    "Preview",
    "create_import",
    "mark_stalled_imports",
    "preview_file",
    "progress_key",
    "read_progress",
    "run_import",
]
