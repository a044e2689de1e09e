"""`{{ event_type|with_article }}`: "an ad_click", "a purchase" (planning.wording)."""

from __future__ import annotations

from typing import Any

from django import template

from planning import wording

register = template.Library()


@register.filter
def with_article(word: Any) -> str:
    return wording.with_article(str(word))
