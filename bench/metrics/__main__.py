"""`python -m bench.metrics`: the whole benchmark; `--child` and `--child-sqlite` are the
PostgreSQL and SQLite halves, each run by the parent in a process of its own."""

from __future__ import annotations

import sys

from bench.metrics import main, postgres, sqlite

if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        sys.exit(postgres.run())
    if sys.argv[1:2] == ["--child-sqlite"]:
        sys.exit(sqlite.run())
    sys.exit(main())
