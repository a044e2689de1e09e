"""Workshop sessions (DOMAIN §11): a facilitated meeting on a plan, its agenda of steps, and
what the room writes during it (private items, votes, positions on the map, decisions).

What a session changes in the plan (a revealed item, a settled position, an adopted choice) is
a plan change like any other, written by planning/services; these rows keep only what belongs to
the meeting itself. The state of the room (the current step, the timer) lives on the session
row, and its `revision` goes up with every change the screens in the room must follow.
"""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from .plans import Plan, validate_one_line

MAX_STEPS = 30
MAX_NOTES_PER_MEMBER = 40  # per step: a brainstorm, not a bulk import


class StepKind(models.TextChoices):
    REVIEW = "review", "Review"
    BRAINSTORM = "brainstorm", "Brainstorm"
    MAP = "map", "Map"
    VOTE = "vote", "Vote"
    DECIDE = "decide", "Decide"
    WRAP_UP = "wrap_up", "Wrap up"


class ItemKind(models.TextChoices):
    """What a brainstorm writes and a vote is on."""

    CHOICE = "choice", "Strategic choices"
    ASSUMPTION = "assumption", "Assumptions"


class ReviewView(models.TextChoices):
    CUSTOMERS = "customers", "Customers by stage"
    BOARD = "board", "The board"
    MAP = "map", "The assumption map"
    AT_RISK = "at_risk", "What broke or drifts"


class SessionStatus(models.TextChoices):
    PLANNED = "planned", "Planned"
    RUNNING = "running", "Running"
    ENDED = "ended", "Ended"


class WorkshopSession(models.Model):
    plan = models.ForeignKey(Plan, on_delete=models.CASCADE, related_name="sessions")
    title = models.CharField(max_length=200, validators=[validate_one_line])
    date = models.DateField(default=dt.date.today)
    status = models.CharField(
        max_length=10, choices=SessionStatus, default=SessionStatus.PLANNED, editable=False
    )
    current_step = models.ForeignKey(
        "SessionStep",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        editable=False,
    )
    votes_per_member = models.PositiveSmallIntegerField(
        default=5,
        validators=[MinValueValidator(1), MaxValueValidator(50)],
        help_text="Dots each member has in a vote step.",
    )
    votes_per_item = models.PositiveSmallIntegerField(
        default=3,
        validators=[MinValueValidator(1), MaxValueValidator(50)],
        help_text="The most dots one member may put on one item.",
    )
    # The timer: running while timer_ends_at is set, paused while timer_left is, else idle.
    timer_ends_at = models.DateTimeField(null=True, blank=True, editable=False)
    timer_left = models.PositiveIntegerField(null=True, blank=True, editable=False)  # seconds
    revision = models.PositiveIntegerField(default=0, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True, editable=False)
    ended_at = models.DateTimeField(null=True, blank=True, editable=False)
    summary_sent_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-date", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=SessionStatus.values), name="session_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(votes_per_item__lte=models.F("votes_per_member")),
                name="session_item_cap_within_votes",
                violation_error_message="A member cannot put more dots on one item than they have.",
            ),
            # One session runs on a plan at a time: the room is one room.
            models.UniqueConstraint(
                fields=["plan"],
                condition=Q(status=SessionStatus.RUNNING),
                name="one_running_session_per_plan",
                violation_error_message="Another session of this plan is running: end it first.",
            ),
        ]

    def __str__(self) -> str:
        return self.title

    @property
    def is_running(self) -> bool:
        return self.status == SessionStatus.RUNNING

    def seconds_left(self, now: dt.datetime | None = None) -> int | None:
        """What the timer shows: None when it is idle."""
        if self.timer_ends_at is not None:
            now = now or timezone.now()
            return max(0, round((self.timer_ends_at - now).total_seconds()))
        return self.timer_left


class SessionStep(models.Model):
    session = models.ForeignKey(WorkshopSession, on_delete=models.CASCADE, related_name="steps")
    position = models.PositiveIntegerField(default=0)
    kind = models.CharField(max_length=12, choices=StepKind)
    title = models.CharField(max_length=200, validators=[validate_one_line])
    timebox_minutes = models.PositiveSmallIntegerField(
        default=10, validators=[MinValueValidator(1), MaxValueValidator(240)]
    )
    # What the step works on: a brainstorm's stage and kind of item, a vote's kind of item, a
    # review's view.
    stage = models.ForeignKey(
        "lifecycle.Stage", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    item_kind = models.CharField(max_length=12, choices=ItemKind, blank=True)
    view = models.CharField(max_length=12, choices=ReviewView, blank=True)
    revealed_at = models.DateTimeField(null=True, blank=True, editable=False)
    # A decide step's item under discussion ("choice-12"); blank: the first not yet decided.
    focus = models.CharField(max_length=40, blank=True, editable=False)

    class Meta:
        ordering = ["position", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(kind__in=StepKind.values), name="step_kind_valid"),
        ]

    def __str__(self) -> str:
        return self.title

    @property
    def revealed(self) -> bool:
        return self.revealed_at is not None

    @property
    def reveals(self) -> bool:
        """Whether the step hides what members write until the facilitator reveals it."""
        return self.kind in {StepKind.BRAINSTORM, StepKind.VOTE}


class SessionNote(models.Model):
    """A member's private item in a brainstorm step, until the reveal makes it a plan item."""

    step = models.ForeignKey(SessionStep, on_delete=models.CASCADE, related_name="notes")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    text = models.CharField(max_length=200, validators=[validate_one_line])
    # An assumption rests on a choice: the one its author picked.
    choice = models.ForeignKey(
        "planning.StrategicChoice", null=True, blank=True, on_delete=models.CASCADE
    )
    created_at = models.DateTimeField(auto_now_add=True)
    item_id = models.BigIntegerField(null=True, blank=True, editable=False)  # after the reveal
    merged = models.BooleanField(default=False, editable=False)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return self.text


class SessionVote(models.Model):
    """A member's dots on one item in a vote step."""

    step = models.ForeignKey(SessionStep, on_delete=models.CASCADE, related_name="votes")
    voter = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    item_type = models.CharField(max_length=12, choices=ItemKind)
    item_id = models.BigIntegerField()
    count = models.PositiveSmallIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["step", "voter", "item_type", "item_id"], name="one_vote_row_per_item"
            ),
            models.CheckConstraint(condition=Q(count__gte=1), name="vote_count_positive"),
        ]

    def __str__(self) -> str:
        dots = "dot" if self.count == 1 else "dots"
        return f"{self.count} {dots} on {self.item_type} #{self.item_id}"


class MapPlacement(models.Model):
    """Where the room puts an assumption on importance × evidence in a map step."""

    step = models.ForeignKey(SessionStep, on_delete=models.CASCADE, related_name="placements")
    assumption = models.ForeignKey(
        "planning.Assumption", on_delete=models.CASCADE, related_name="+"
    )
    importance = models.PositiveSmallIntegerField(
        validators=[MinValueValidator(1), MaxValueValidator(5)]
    )
    evidence = models.PositiveSmallIntegerField(
        validators=[MinValueValidator(1), MaxValueValidator(5)]
    )
    moved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    settled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["step", "assumption"], name="one_place_per_assumption"),
            models.CheckConstraint(
                condition=Q(importance__range=(1, 5), evidence__range=(1, 5)),
                name="placement_on_the_map",
            ),
        ]

    def __str__(self) -> str:
        # By id: the label stays one query-free line in lists and on the delete page.
        return (
            f"Assumption #{self.assumption_id} at importance {self.importance}, "
            f"evidence {self.evidence}"
        )


class Decision(models.Model):
    """What the room decided on an item (the plan change itself is in the plan's activity)."""

    class Outcome(models.TextChoices):
        ADOPTED = "adopted", "Adopted"
        REJECTED = "rejected", "Rejected"
        TESTED = "tested", "Given a test"
        OWNER = "owner", "Owner named"
        MERGED = "merged", "Merged"
        PLACED = "placed", "Placed on the map"

    session = models.ForeignKey(WorkshopSession, on_delete=models.CASCADE, related_name="decisions")
    step = models.ForeignKey(
        SessionStep, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    item_type = models.CharField(max_length=12, choices=ItemKind)
    item_id = models.BigIntegerField()
    item_label = models.CharField(max_length=400)
    outcome = models.CharField(max_length=10, choices=Outcome)
    detail = models.CharField(max_length=400, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["decided_at", "id"]

    def __str__(self) -> str:
        return f"{self.get_outcome_display()}: {self.item_label}"
