"""The activity feed: every change, who and when, before → after, by item and by person."""

from __future__ import annotations

import pytest
from django.urls import reverse

from planning.models import StrategicChoice
from planning.services import create_item, save_item, snapshot

pytestmark = pytest.mark.django_db


def test_feed_shows_before_and_after_in_words_and_filters(plan, cmo, cio):
    buy, use = plan.stages.get(name="Buy"), plan.stages.get(name="Use")
    choice = create_item("choice", plan, cmo.user, {"title": "Loyalty", "stages": [buy.pk]})
    other = create_item("choice", plan, cio.user, {"title": "Self-service portal"})
    choice = StrategicChoice.objects.get(pk=choice.pk)
    base = snapshot(choice)
    save_item(
        choice,
        cio.user,
        base_version=choice.version,
        base=base,
        mine={**base, "title": "Loyalty subscription", "stages": [buy.pk, use.pk]},
    )

    url = reverse("planning:activity", args=[plan.slug])
    html = cmo.client.get(url).content.decode()
    assert "Loyalty subscription" in html
    assert '<td class="before">Loyalty</td>' in html
    assert '<td class="after">Buy, Use</td>' in html
    assert html.index("updated choice") < html.index("created choice")  # newest first

    only_item = cmo.client.get(url, {"type": "choice", "item": choice.pk}).content.decode()
    assert "Self-service portal" not in only_item and "Loyalty subscription" in only_item
    by_cio = cmo.client.get(url, {"person": cio.user.pk}).content.decode()
    assert f"item={other.pk}" in by_cio and "updated choice" in by_cio
    by_cmo = cmo.client.get(url, {"person": cmo.user.pk}).content.decode()
    assert "Self-service portal" not in by_cmo and "updated choice" not in by_cmo


def test_observers_see_the_feed_without_revert_buttons(plan, cmo, observer):
    create_item("choice", plan, cmo.user, {"title": "Loyalty"})
    html = observer.client.get(reverse("planning:activity", args=[plan.slug])).content.decode()
    assert "created choice" in html
    assert ">Revert</button>" not in html
    assert (
        ">Revert</button>"
        in cmo.client.get(reverse("planning:activity", args=[plan.slug])).content.decode()
    )
