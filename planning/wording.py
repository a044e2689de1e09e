"""Words a sentence is built around: "a" or "an" before a word that is only known at run time
(an event type, a field's name), said as a reader would say it aloud."""

from __future__ import annotations

import re

# Spelled with a vowel, said with a consonant: "a usage event", "a user_signup", "a unit",
# "a one-off", "a euro" (but "an upgrade", "an unsubscribe", "an onboarding").
_SAID_WITH_A_CONSONANT = re.compile(r"u[bcfhjkqrst][aeiou]|uni(?:[^nmd]|mo)|eu|onc?e(?![a-z])")
# Spelled with an h that is not said: "an hour", "an honest".
_SAID_WITH_A_VOWEL = re.compile(r"hour|hono|honest|heir")


def with_article(word: str) -> str:
    """`word` after the indefinite article it takes: "an ad_click", "a purchase", "a usage"."""
    said = word.strip().lower()
    if _SAID_WITH_A_VOWEL.match(said):
        return f"an {word}"
    if said[:1] in ("a", "e", "i", "o", "u") and not _SAID_WITH_A_CONSONANT.match(said):
        return f"an {word}"
    return f"a {word}"
