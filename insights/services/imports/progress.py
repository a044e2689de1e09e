"""An import's progress: rows read, the bar, and the heartbeat that tells a live import from one
whose worker died. In the cache, not the database: the import's own transaction hides its writes
until the end."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.core.cache import cache, caches
from django.utils import timezone

from ...models import Import

if TYPE_CHECKING:
    from .csvfiles import Source
    from .reading import ImportResult

log = logging.getLogger(__name__)

PROGRESS_EVERY_SECONDS = 0.5
PROGRESS_EVERY_ROWS = 5000
STALE_AFTER_SECONDS = 120

# Called often while an import works (each beat is cheap: it writes at most twice a second).
Beat = Callable[[], None]


def progress_key(import_id: int) -> str:
    return f"import-progress:{import_id}"


def cached_progress(import_id: int) -> dict[str, Any]:
    """What the worker last said of its progress; nothing when the cache cannot be read (Redis
    down): the import's page then shows what the database knows, never an error."""
    try:
        return cache.get(progress_key(import_id)) or {}
    except Exception as error:
        log.warning("import %s: progress unreadable: %s", import_id, error)
        return {}


def forget_progress(import_id: int) -> None:
    """Once the import has finished; it expires by itself if the cache cannot be reached."""
    try:
        cache.delete(progress_key(import_id))
    except Exception as error:
        log.warning("import %s: progress not cleared: %s", import_id, error)


def read_progress(record: Import) -> dict[str, Any]:
    """Rows read, rows per second and time left, for the progress bar."""
    data = cached_progress(record.pk)
    rows = data.get("rows", record.rows_read)
    done = data.get("bytes", 0)
    total = record.size_bytes or 1
    elapsed = max(data.get("at", 0) - data.get("started", 0), 0.001)
    rate = rows / elapsed if data else 0
    if record.status in {Import.Status.SUCCEEDED, Import.Status.REJECTED}:
        fraction = 1.0
    else:  # all read is not all stored: a running import never shows a full bar
        fraction = min(done / total, 0.99)
    left = (elapsed / fraction - elapsed) if 0 < fraction < 1 else 0
    return {"rows": rows, "rate": rate, "fraction": fraction, "seconds_left": left}


class Heartbeat:
    """Progress, and the sign of life: each call writes the rows and bytes read so far, at most
    every PROGRESS_EVERY_SECONDS."""

    def __init__(self, record: Import, source: Source, result: ImportResult) -> None:
        self.key = progress_key(record.pk)
        # This thread's cache connection, shared with the parsing thread that beats too.
        self.cache = caches["default"]
        self.source = source
        self.result = result
        self.started = time.time()
        self.last = 0.0

    def __call__(self) -> None:
        now = time.time()
        if now - self.last < PROGRESS_EVERY_SECONDS:
            return
        self.last = now
        progress = {
            "rows": self.result.rows_read,
            "bytes": self.source.bytes_read,
            "started": self.started,
            "at": now,
        }
        self.cache.set(self.key, progress, timeout=3600)


def stale_before() -> dt.datetime:
    """A running import whose last sign of life is older than this has lost its worker."""
    return timezone.now() - dt.timedelta(seconds=STALE_AFTER_SECONDS)


def is_alive(import_id: int, stale: dt.datetime) -> bool:
    """Whether the import's worker beat since `stale` (the database's heartbeat is no proof:
    the import's transaction hides it)."""
    return cached_progress(import_id).get("at", 0) > stale.timestamp()


def mark_stalled_imports() -> int:
    """Imports whose worker died mid-way become failed and retryable, never stuck “running”."""
    stale = stale_before()
    stalled = 0
    for record in Import.objects.filter(status=Import.Status.RUNNING, heartbeat_at__lt=stale):
        if is_alive(record.pk, stale):
            continue
        stalled += Import.objects.filter(pk=record.pk, status=Import.Status.RUNNING).update(
            status=Import.Status.FAILED,
            finished_at=timezone.now(),
            message="The import was interrupted before it finished. Nothing from it was saved; "
            "retry it to import the file again.",
        )
    return stalled
