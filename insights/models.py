"""Customer data (imports and events) and assumption runs."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q

from planning.models import Assumption, AssumptionStatus, Membership, Plan

# The columns of an events file (DOMAIN §4), in its order; any other column is an attribute.
EVENT_FIELDS = [
    "customer_id",
    "occurred_at",
    "event_type",
    "value",
    "segment",
    "channel",
    "event_id",
]


def identity_digest(event_id: str | None, content: bytes, occurrence: int) -> bytes:
    """An event's dedupe key (DOMAIN §4), as bytes: the first 128 bits of the SHA-256 of its
    `event_id` when the source gives one, else of its `content` (the JSON text of every mapped
    column and attribute, as read, as `json.dumps(sort_keys=True, ensure_ascii=False)` writes it,
    UTF-8) and how many identical rows came before it in its file. The one definition of an
    event's identity: Event.identity returns it as a UUID, the import engine writes it as hex."""
    if event_id:
        return hashlib.sha256(("id\x1f" + event_id).encode()).digest()[:16]
    return hashlib.sha256(b"row\x1f" + content + f"\x1f{occurrence}".encode()).digest()[:16]


def import_upload_path(instance: Import, filename: str) -> str:
    return f"imports/{instance.plan.slug}/{filename}"


class Import(models.Model):
    """One uploaded file of events. The file is kept, whatever happens to its rows."""

    class Status(models.TextChoices):
        DRAFT = "draft", "Waiting for your column choices"
        PENDING = "pending", "Waiting to start"
        RUNNING = "running", "Importing"
        SUCCEEDED = "succeeded", "Imported"
        REJECTED = "rejected", "Rejected"
        FAILED = "failed", "Failed, can be retried"
        # Its events were deleted again; the record, its file and its figures are kept.
        UNDONE = "undone", "Undone"

    class Mode(models.TextChoices):
        ALL_OR_NOTHING = "all_or_nothing", "All or nothing"
        SKIP_INVALID = "skip_invalid", "Import the valid rows"

    # Database-level, like its events: deleting a plan never walks its imports in Python.
    plan = models.ForeignKey(Plan, on_delete=models.DB_CASCADE, related_name="imports")
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.DB_SET_NULL
    )
    file = models.FileField(upload_to=import_upload_path, max_length=300)
    rejected_file = models.FileField(upload_to=import_upload_path, max_length=300, blank=True)
    original_name = models.CharField(max_length=255)
    size_bytes = models.PositiveBigIntegerField(default=0)
    mode = models.CharField(max_length=20, choices=Mode, default=Mode.ALL_OR_NOTHING)
    mapping = models.JSONField(default=dict, blank=True, help_text="source column → event field")
    delimiter = models.CharField(max_length=1, blank=True)
    encoding = models.CharField(max_length=20, blank=True)
    status = models.CharField(max_length=20, choices=Status, default=Status.PENDING)
    rows_read = models.PositiveBigIntegerField(default=0)
    rows_imported = models.PositiveBigIntegerField(default=0)
    rows_duplicate = models.PositiveBigIntegerField(default=0)
    rows_rejected = models.PositiveBigIntegerField(default=0)
    errors = models.JSONField(default=list, blank=True, help_text="The first errors, as shown.")
    message = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # The plan's latest event (the as_of every windowed metric ends on) before and after the
    # import stored its rows: an import that moves it far says so (`as_of_move`).
    as_of_before = models.DateTimeField(null=True, blank=True)
    as_of_after = models.DateTimeField(null=True, blank=True)
    undone_at = models.DateTimeField(null=True, blank=True)
    undone_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.DB_SET_NULL,
        related_name="+",
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(
                    status__in=[
                        "draft",
                        "pending",
                        "running",
                        "succeeded",
                        "rejected",
                        "failed",
                        "undone",
                    ]
                ),
                name="import_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.original_name} ({self.get_status_display()})"

    @property
    def is_finished(self) -> bool:
        return self.status in {
            self.Status.SUCCEEDED,
            self.Status.REJECTED,
            self.Status.FAILED,
            self.Status.UNDONE,
        }

    @property
    def is_working(self) -> bool:
        return self.status in {self.Status.PENDING, self.Status.RUNNING}

    @property
    def rejected_for_its_rows(self) -> bool:
        """An all-or-nothing import that some bad rows rejected, with valid rows to import."""
        return (
            self.status == self.Status.REJECTED
            and self.mode == self.Mode.ALL_OR_NOTHING
            and 0 < self.rows_rejected < self.rows_read
        )

    @property
    def rows_valid(self) -> int:
        return self.rows_read - self.rows_rejected

    def undoable_by(self, membership: Membership) -> bool:
        """Whether this member may undo the import, once it succeeded: a facilitator any import,
        an editor the imports they uploaded themselves (the person who sent the wrong file puts
        it right at once, but never removes a colleague's data)."""
        if not membership.can_edit:
            return False
        return membership.can_manage or (
            self.uploaded_by_id is not None and self.uploaded_by_id == membership.user_id
        )

    def can_be_undone_by(self, membership: Membership) -> bool:
        return self.status == self.Status.SUCCEEDED and self.undoable_by(membership)

    @property
    def as_of_move(self) -> AsOfMove | None:
        """How far this import moved the plan's latest data, when further than the next day."""
        return AsOfMove.between(self.as_of_before, self.as_of_after)


@dataclass(frozen=True)
class AsOfMove:
    """The plan's latest event moved from one day to another that is not the next one.

    A daily feed moves it by a day every time, and is expected to; a jump of more than a day
    (a week of events dated ahead, a file from the future) moves the end of every windowed
    metric with it, and is worth saying. Compared by calendar day (UTC), not by 24 hours: a
    feed whose last event comes at 23:50 one day and 23:55 the next moves by one day."""

    before: dt.datetime
    after: dt.datetime

    @classmethod
    def between(cls, before: dt.datetime | None, after: dt.datetime | None) -> AsOfMove | None:
        """The move, when it is more than a day either way (back: an import was undone)."""
        if before is None or after is None:
            return None
        move = cls(before, after)
        return move if abs(move.days) > 1 else None

    @property
    def days(self) -> int:
        """Calendar days (UTC) from before to after; negative when it moved back."""
        return (self.after.astimezone(dt.UTC).date() - self.before.astimezone(dt.UTC).date()).days

    @property
    def forward(self) -> bool:
        return self.days > 0

    @property
    def day_format(self) -> str:
        """How the template writes both days: with the year only when they differ in it."""
        return "j M" if self.before.year == self.after.year else "j M Y"


class Event(models.Model):
    """One thing a customer did (DOMAIN §4)."""

    id = models.BigAutoField(primary_key=True)
    # No foreign-key constraints: PostgreSQL checks those row by row, which cost an import more
    # than the rows themselves (6 s per million). Triggers keep the same promises set-based
    # (migration 0008): an event's plan and import must exist, checked once per statement, and
    # deleting a plan or an import deletes its events in the database itself.
    plan = models.ForeignKey(
        Plan,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,
        related_name="events",
    )
    # Indexed with BRIN on PostgreSQL (an import's rows lie together), by migration 0008.
    source_import = models.ForeignKey(
        Import,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,
        related_name="events",
    )
    customer_id = models.CharField(max_length=200)
    occurred_at = models.DateTimeField()
    event_type = models.CharField(max_length=100)
    value = models.DecimalField(max_digits=20, decimal_places=6, null=True, blank=True)
    segment = models.CharField(max_length=100, blank=True)
    channel = models.CharField(max_length=100, blank=True)
    event_id = models.CharField(max_length=200, null=True, blank=True)
    attributes = models.JSONField(default=dict, blank=True)
    # The event's identity within the plan: its event_id, or a hash of its whole content and how
    # many identical rows came before it in its file. Re-imports add nothing (DOMAIN §4).
    dedupe_key = models.UUIDField()

    class Meta:
        # No default ordering: it would sort millions of rows, and break distinct() on a column.
        constraints = [
            models.UniqueConstraint(fields=["plan", "dedupe_key"], name="event_stored_once"),
            models.CheckConstraint(condition=~Q(customer_id=""), name="event_customer_not_blank"),
            models.CheckConstraint(condition=~Q(event_type=""), name="event_type_not_blank"),
        ]
        # Every index costs each imported row a B-tree insertion (2–4 s per million): one serves
        # the metric queries (per type over time) and the plan's latest event (a skip scan).
        indexes = [
            models.Index(fields=["plan", "event_type", "occurred_at"], name="event_plan_type_time"),
        ]

    def __str__(self) -> str:
        return f"{self.customer_id} {self.event_type} {self.occurred_at:%Y-%m-%d %H:%M}"

    @staticmethod
    def identity(event_id: str | None, content: dict[str, Any], occurrence: int) -> uuid.UUID:
        """The dedupe key (DOMAIN §4): by `event_id` when the source gives one, else by the row's
        whole content (every mapped column and attribute, as read) and how many identical rows
        came before it in the same file."""
        text = "" if event_id else json.dumps(content, sort_keys=True, ensure_ascii=False)
        return uuid.UUID(bytes=identity_digest(event_id, text.encode(), occurrence))


class PlanRetest(models.Model):
    """One re-test of a whole plan: what its runs share, and what the digest e-mails are about."""

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    plan = models.ForeignKey(Plan, on_delete=models.CASCADE, related_name="retests")
    trigger = models.CharField(max_length=20, default="manual")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    scheduled_for = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=Status, default=Status.PENDING)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    # Written every few seconds while a worker runs it: a stale one has lost its worker.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    digests_queued_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # A scheduled slot is re-tested once, however many beats or workers see it.
            models.UniqueConstraint(
                fields=["plan", "scheduled_for"],
                condition=Q(scheduled_for__isnull=False),
                name="one_retest_per_scheduled_slot",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.plan} re-test {self.created_at:%Y-%m-%d %H:%M} ({self.status})"


class DigestDelivery(models.Model):
    """One member's digest e-mail for one scheduled re-test. `sent_at` only once it was sent."""

    retest = models.ForeignKey(PlanRetest, on_delete=models.CASCADE, related_name="deliveries")
    membership = models.ForeignKey(
        "planning.Membership", on_delete=models.CASCADE, related_name="digest_deliveries"
    )
    kind = models.CharField(max_length=10, default="changes")  # or "quiet"
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "digest deliveries"
        constraints = [
            models.UniqueConstraint(
                fields=["retest", "membership"], name="one_digest_per_member_and_retest"
            ),
        ]

    def __str__(self) -> str:
        return f"digest to {self.membership} ({'sent' if self.sent_at else 'not sent'})"


class AssumptionRun(models.Model):
    """One evaluation of an assumption's test (DOMAIN §5): what was seen and what it means."""

    class Trigger(models.TextChoices):
        MANUAL = "manual", "Re-test now"
        SCHEDULED = "scheduled", "Schedule"
        COMMAND = "command", "Command line"

    assumption = models.ForeignKey(Assumption, on_delete=models.CASCADE, related_name="runs")
    plan = models.ForeignKey(Plan, on_delete=models.CASCADE, related_name="assumption_runs")
    retest = models.ForeignKey(
        PlanRetest, null=True, blank=True, on_delete=models.SET_NULL, related_name="runs"
    )
    trigger = models.CharField(max_length=20, choices=Trigger, default=Trigger.MANUAL)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)
    as_of = models.DateTimeField(null=True, blank=True)
    observed = models.FloatField(null=True, blank=True)
    n = models.PositiveIntegerField(null=True, blank=True)
    ci_low = models.FloatField(null=True, blank=True)
    ci_high = models.FloatField(null=True, blank=True)
    status = models.CharField(max_length=20, choices=AssumptionStatus)
    previous_status = models.CharField(max_length=20, choices=AssumptionStatus)
    changed = models.BooleanField(default=False)
    message = models.TextField(blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    # The test as it was at run time, so history stays readable after the test is edited.
    test = models.JSONField(default=dict)
    # Early warning at run time (DOMAIN §10): {"since", "direction", "message"} or null, and
    # whether it differs from the previous run's (a digest reports it like a change of status).
    drift = models.JSONField(null=True, blank=True)
    drift_changed = models.BooleanField(default=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["assumption", "-created_at"], name="run_assumption_recent"),
            models.Index(fields=["plan", "-created_at"], name="run_plan_recent"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=AssumptionStatus.values) & ~Q(status="untested"),
                name="run_status_valid",
            ),
            models.CheckConstraint(
                condition=Q(ci_low__isnull=True)
                | Q(ci_high__isnull=True)
                | Q(ci_low__lte=models.F("ci_high")),
                name="run_interval_ordered",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.assumption} → {self.status}"

    @property
    def observed_display(self) -> str:
        return self.assumption.format_value(self.observed)

    @property
    def interval_display(self) -> str:
        if self.ci_low is None or self.ci_high is None:
            return ""
        fmt = self.assumption.format_value
        return f"{fmt(self.ci_low)} – {fmt(self.ci_high)}"

    @property
    def target_display(self) -> str:
        """The threshold the run was judged against (the test may have changed since)."""
        threshold = self.test.get("threshold")
        fmt = self.assumption.format_value
        if isinstance(threshold, list):
            return f"between {fmt(threshold[0])} and {fmt(threshold[1])}"
        if threshold is None:
            return ""
        sign = "≥" if self.test.get("comparator") == ">=" else "≤"
        return f"{sign} {fmt(threshold)}"


class AssumptionHistory(models.Model):
    """An assumption's test evaluated at the end of every period of its plan (DOMAIN §10).

    Kept per `key` (the test, the plan's period and data version, and the event map where the
    metric reads it): a key that exists is never computed again."""

    class Status(models.TextChoices):
        PENDING = "pending", "Computing"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    assumption = models.ForeignKey(Assumption, on_delete=models.CASCADE, related_name="histories")
    plan = models.ForeignKey(Plan, on_delete=models.CASCADE, related_name="assumption_histories")
    key = models.CharField(max_length=64)
    period = models.CharField(max_length=10)
    data_version = models.PositiveBigIntegerField()
    test = models.JSONField(default=dict)
    status = models.CharField(max_length=10, choices=Status, default=Status.PENDING)
    as_of = models.DateTimeField(null=True, blank=True)
    # [{"as_of", "observed", "n", "ci_low", "ci_high", "status"}], oldest first.
    points = models.JSONField(default=list, blank=True)
    drift = models.JSONField(null=True, blank=True)
    message = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    computed_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "assumption histories"
        constraints = [
            models.UniqueConstraint(fields=["assumption", "key"], name="one_history_per_key"),
            models.CheckConstraint(
                condition=Q(status__in=["pending", "ready", "failed"]),
                name="history_status_valid",
            ),
        ]
        indexes = [
            models.Index(fields=["assumption", "-created_at"], name="history_assumption_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.assumption} history ({self.get_status_display()}, {len(self.points)} points)"


class PlanDataSource(models.Model):
    """Where a plan's events live (issue #14): imported into Outside-In, the default, or a
    table on the customer's Spark cluster, read through Spark Connect where every number runs.

    The access token is never stored: `token_env` names the environment variable of the
    Outside-In processes that holds it."""

    class Engine(models.TextChoices):
        IMPORTED = "imported", "Imported into Outside-In"
        SPARK = "spark", "A table on Apache Spark"

    plan = models.OneToOneField(Plan, on_delete=models.CASCADE, related_name="data_source")
    engine = models.CharField(max_length=10, choices=Engine, default=Engine.IMPORTED)
    url = models.CharField("Spark Connect address", max_length=300, blank=True)
    table = models.CharField(max_length=500, blank=True)
    # DOMAIN §4's column name -> the table's, only where they differ.
    columns = models.JSONField("column mapping", default=dict, blank=True)
    token_env = models.CharField("token variable", max_length=100, blank=True)
    last_checked_at = models.DateTimeField(null=True, blank=True)
    last_check_ok = models.BooleanField(default=False)
    last_check_message = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(engine__in=["imported", "spark"]), name="data_source_engine_valid"
            ),
        ]

    def __str__(self) -> str:
        if self.engine == self.Engine.SPARK:
            return f"{self.plan}: {self.table} on {self.url}"
        return f"{self.plan}: imported events"

    @property
    def on_spark(self) -> bool:
        return self.engine == self.Engine.SPARK
