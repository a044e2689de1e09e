""" "a" or "an" before a word known only at run time, as the word is said: the test sentences of
the demo's event types, the plan file's errors, and the template filter."""

from __future__ import annotations

import pytest
from django.template import Context, Template

from planning.models import Assumption
from planning.wording import with_article


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        # The demo's event types and a few more from real exports.
        ("ad_click", "an ad_click"),
        ("email_open", "an email_open"),
        ("order", "an order"),
        ("install", "an install"),
        ("upgrade", "an upgrade"),
        ("unsubscribe", "an unsubscribe"),
        ("onboarding_done", "an onboarding_done"),
        ("purchase", "a purchase"),
        ("visit", "a visit"),
        ("faq_view", "a faq_view"),
        ("survey", "a survey"),
        # A vowel said as a consonant, an h not said.
        ("usage", "a usage"),
        ("user_signup", "a user_signup"),
        ("unit_sale", "a unit_sale"),
        ("one_time_purchase", "a one_time_purchase"),
        ("euro_payment", "a euro_payment"),
        ("hour_booked", "an hour_booked"),
        ("hotel_stay", "a hotel_stay"),
        # As written: the case is kept, the article is always lower-case.
        ("Order", "an Order"),
        ("…", "a …"),
    ],
)
def test_the_article_is_the_one_the_word_is_said_with(word, expected):
    assert with_article(word) == expected


def sentence(threshold: float = 0.3, **fields) -> str:
    return Assumption(
        statement="s", min_sample=30, comparator=">=", threshold=threshold, **fields
    ).test_sentence


def test_a_test_sentence_puts_the_right_article_before_each_event_type():
    conversion = {"from_event": "ad_click", "to_event": "order", "within_days": 30}
    assert sentence(metric="conversion_rate", params=conversion) == (
        "The share of customers with an ad_click event who have an order event within 30 days "
        "is at least 30.0%."
    )
    assert sentence(200, metric="active_customers", params={"event_type": "usage"}) == (
        "The number of customers with a usage event is at least 200."
    )
    assert sentence(40, metric="mean_value", params={"event_type": "upgrade"}) == (
        "The mean value of an upgrade event is at least 40.00."
    )
    # A parameter not chosen yet is an ellipsis, after "a".
    assert sentence(metric="conversion_rate", params={"to_event": "order"}) == (
        "The share of customers with a … event who have an order event within … days "
        "is at least 30.0%."
    )


def test_the_template_filter_gives_the_word_with_its_article():
    template = Template("{% load wording %}with {{ kind|with_article }} event")
    assert template.render(Context({"kind": "ad_click"})) == "with an ad_click event"
    assert template.render(Context({"kind": "<b>"})) == "with a &lt;b&gt; event"
