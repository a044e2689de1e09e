"""Account pages that differ from Django's own: the sign-in lockout and a throttled password
reset. The other sign-in pages are Django's (`django.contrib.auth.urls`)."""

from __future__ import annotations

import logging
import math
from typing import Any

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import PasswordResetForm
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render

from ..services.accounts import allow_password_reset

log = logging.getLogger(__name__)


def locked_out(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    """django-axes' lockout answer (AXES_LOCKOUT_CALLABLE), for the site's and the admin's
    sign-in. Axes passes the original response and the credentials, positionally or not
    depending on the path (sync or async): neither is needed here."""
    cool_off = settings.AXES_COOLOFF_TIME
    context = {
        "minutes": math.ceil(cool_off.total_seconds() / 60),
        "limit": settings.AXES_FAILURE_LIMIT,
    }
    return render(request, "registration/locked_out.html", context, status=429)


class PasswordResetView(auth_views.PasswordResetView):
    """Django's password reset, sending no mail past the hourly limits. The answer is the same
    "check your e-mail" redirect either way, so it tells nothing about the address."""

    def form_valid(self, form: PasswordResetForm) -> HttpResponse:
        ip_address = self.request.META.get("REMOTE_ADDR") or ""
        if allow_password_reset(form.cleaned_data["email"], ip_address):
            return super().form_valid(form)
        log.warning("Password reset throttled: no e-mail sent (request from %s)", ip_address)
        return HttpResponseRedirect(self.get_success_url())
