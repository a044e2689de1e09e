"""What happens on a plan: comments, the activity record, presence on the board, background jobs
that wait for the broker."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.urls import reverse

from .items import (
    Assumption,
    StrategicChoice,
)
from .plans import (
    Plan,
)


class Comment(models.Model):
    """A member's comment on a choice or an assumption (exactly one of them)."""

    plan = models.ForeignKey(Plan, on_delete=models.CASCADE, related_name="comments")
    choice = models.ForeignKey(
        StrategicChoice, null=True, blank=True, on_delete=models.CASCADE, related_name="comments"
    )
    assumption = models.ForeignKey(
        Assumption, null=True, blank=True, on_delete=models.CASCADE, related_name="comments"
    )
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="comments"
    )
    body = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(choice__isnull=False, assumption__isnull=True)
                    | Q(choice__isnull=True, assumption__isnull=False)
                ),
                name="comment_on_choice_or_assumption",
            ),
            models.CheckConstraint(condition=~Q(body=""), name="comment_body_not_blank"),
        ]

    def __str__(self) -> str:
        return self.body[:60]

    def get_absolute_url(self) -> str:
        """The comment in its thread's page, at the comment (the anchor the thread gives it)."""
        kind, target = (
            ("choice", self.choice_id) if self.choice_id else ("assumption", self.assumption_id)
        )
        thread = reverse(f"planning:{kind}_comments", args=[self.plan.slug, target])
        return f"{thread}#comment-{self.pk}"


class Activity(models.Model):
    """One change to a plan: who, when, what, before and after. Written, never edited."""

    class Action(models.TextChoices):
        CREATED = "created", "created"
        UPDATED = "updated", "updated"
        DELETED = "deleted", "deleted"
        MOVED = "moved", "moved"
        REVERTED = "reverted", "reverted"
        IMPORTED = "imported", "imported"
        TESTED = "tested", "re-tested"
        SENT = "sent", "sent"
        DECLINED = "declined", "declined"

    plan = models.ForeignKey(Plan, on_delete=models.CASCADE, related_name="activities")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="activities",
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    action = models.CharField(max_length=20, choices=Action)
    item_type = models.CharField(max_length=40)
    item_id = models.BigIntegerField(null=True, blank=True)
    item_label = models.CharField(max_length=400, blank=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    reverts = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="reverted_by"
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "activities"
        indexes = [
            models.Index(fields=["plan", "-created_at"], name="activity_plan_recent"),
            models.Index(fields=["plan", "item_type", "item_id"], name="activity_plan_item"),
        ]

    def __str__(self) -> str:
        who = self.actor.get_username() if self.actor else "system"
        return f"{who} {self.action} {self.item_type} “{self.item_label}”"


class Presence(models.Model):
    """One open board: who has the plan open right now, and what they are editing."""

    plan = models.ForeignKey(Plan, on_delete=models.CASCADE, related_name="presences")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    connection = models.CharField(max_length=40, unique=True)
    editing = models.CharField(max_length=80, blank=True)
    last_seen = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["last_seen"]
        indexes = [models.Index(fields=["plan", "last_seen"], name="presence_plan_seen")]

    def __str__(self) -> str:
        return f"{self.user} on {self.plan}"


class PendingJob(models.Model):
    """A background job the broker could not take when it was asked to (Redis down): kept here,
    after the change that asked for it was saved, and sent by the beat once the broker is back."""

    task = models.CharField(max_length=200)
    args = models.JSONField(default=list)
    kwargs = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)
    attempts = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.task}{tuple(self.args)}"
