"""The requests our views receive: Django's, with django-htmx's details (`request.htmx`), and,
behind `login_required`, a signed-in user (healthchecks' AuthenticatedHttpRequest)."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.http import HttpRequest
from django_htmx.middleware import HtmxDetails


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


class AuthenticatedHttpRequest(HtmxHttpRequest):
    user: User
