"""`{{ comment.body|mentions:members }}`: a comment's text, escaped, its lines kept, and each
@username of a member of the plan highlighted (the same names `services.mentioned_members`
e-mails)."""

from __future__ import annotations

import re
from collections.abc import Collection

from django import template
from django.template.defaultfilters import linebreaksbr
from django.utils.html import escape, format_html
from django.utils.safestring import SafeString

from ..services.people import MENTION

register = template.Library()


@register.filter
def mentions(body: str, usernames: Collection[str]) -> SafeString:
    names = {name.lower() for name in usernames}

    def highlight(match: re.Match[str]) -> str:
        name = match.group(1).rstrip(".")  # "@ana." at a sentence's end names ana
        if name.lower() not in names:
            return match.group(0)
        rest = match.group(1)[len(name) :]
        return format_html('<strong class="mention">@{}</strong>{}', name, rest)

    # Escaped first: a name is letters, digits and ._+- only, which escaping leaves alone.
    # linebreaksbr marks the result safe: every piece of it is escaped above.
    return linebreaksbr(MENTION.sub(highlight, escape(body)), autoescape=False)
