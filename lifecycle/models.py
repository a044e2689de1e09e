"""The customer life cycle of a plan: its stages, in order, and the event map onto them."""

from __future__ import annotations

from django.db import models
from django.db.models.functions import Lower

# Forrester's customer life cycle: every new plan starts with these, in this order.
DEFAULT_STAGES = ["Discover", "Explore", "Buy", "Use", "Ask", "Engage"]

# Suggested stage for a well-known event type (DOMAIN §2); the facilitator decides.
SUGGESTED_STAGE = {
    "ad_click": "Discover",
    "impression": "Discover",
    "first_visit": "Discover",
    "visit": "Explore",
    "content_view": "Explore",
    "page_view": "Explore",
    "trial_start": "Explore",
    "quote_request": "Explore",
    "purchase": "Buy",
    "order": "Buy",
    "signup": "Buy",
    "subscription_start": "Buy",
    "usage": "Use",
    "login": "Use",
    "delivery": "Use",
    "install": "Use",
    "support_ticket": "Ask",
    "chat": "Ask",
    "faq_view": "Ask",
    "call": "Ask",
    "repurchase": "Engage",
    "referral": "Engage",
    "review": "Engage",
    "survey": "Engage",
    "renewal": "Engage",
}


class Stage(models.Model):
    plan = models.ForeignKey("planning.Plan", on_delete=models.CASCADE, related_name="stages")
    name = models.CharField(max_length=80)
    position = models.PositiveIntegerField(default=0)
    version = models.PositiveIntegerField(default=1)

    class Meta:
        ordering = ["position", "id"]
        constraints = [
            models.UniqueConstraint("plan", Lower("name"), name="stage_name_unique_in_plan"),
            models.CheckConstraint(condition=~models.Q(name=""), name="stage_name_not_blank"),
        ]

    def __str__(self) -> str:
        return self.name


class EventMapping(models.Model):
    """One line of a plan's event map: imported `event_type` → life-cycle stage."""

    plan = models.ForeignKey("planning.Plan", on_delete=models.CASCADE, related_name="event_map")
    event_type = models.CharField(max_length=100)
    stage = models.ForeignKey(Stage, on_delete=models.CASCADE, related_name="event_types")

    class Meta:
        ordering = ["event_type"]
        constraints = [
            models.UniqueConstraint(fields=["plan", "event_type"], name="event_type_mapped_once"),
            # Event types are stored lower-case (DOMAIN §4), so the map is too.
            models.CheckConstraint(
                condition=models.Q(event_type=Lower("event_type")) & ~models.Q(event_type=""),
                name="event_type_lower_case",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} → {self.stage.name}"

    def save(self, *args, **kwargs) -> None:
        self.event_type = self.event_type.strip().lower()
        super().save(*args, **kwargs)
