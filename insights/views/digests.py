"""E-mail: the digest's one-click unsubscribe, no sign-in."""

from __future__ import annotations

from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from planning.http import HtmxHttpRequest
from planning.models import Membership

from ..services.digests import membership_from_token


@csrf_exempt  # RFC 8058 one-click: the mail client POSTs without our cookie; the token is signed.
@require_http_methods(["GET", "POST"])
def unsubscribe(request: HtmxHttpRequest, token: str) -> HttpResponse:
    member = membership_from_token(token)
    if member is None:
        return render(request, "insights/unsubscribe.html", {"invalid": True}, status=404)
    done = False
    if request.method == "POST":
        Membership.objects.filter(pk=member.pk).update(digest_opt_out=True)
        done = True
    return render(request, "insights/unsubscribe.html", {"member": member, "done": done})
