"""The live board: the event stream (ASGI, no thread per open board) and presence."""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.contrib.auth.decorators import login_required
from django.core.exceptions import BadRequest
from django.http import HttpResponse, StreamingHttpResponse
from django.views.decorators.http import require_GET, require_POST

from .. import live
from ..http import AuthenticatedHttpRequest
from .access import get_plan_for_user

# --- live: the event stream and presence --------------------------------------------------------

RETRY_AFTER_SECONDS = 30


@require_GET
@login_required
async def events(
    request: AuthenticatedHttpRequest, slug: str
) -> HttpResponse | StreamingHttpResponse:
    """Server-sent events for an open board. Served through ASGI: an open stream costs no
    thread. Outsiders get 404 here like everywhere."""
    user = await request.auser()
    assert user.is_authenticated  # login_required
    plan, _ = await sync_to_async(get_plan_for_user)(user, slug)
    seen = request.headers.get("Last-Event-ID") or request.GET.get("v") or ""
    try:
        events = live.stream(plan.pk, user.id, int(seen) if seen.isdigit() else None)
    except live.Full as full:
        # The board shows this text and tries again after Retry-After.
        return HttpResponse(
            str(full),
            status=429,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            content_type="text/plain; charset=utf-8",
        )
    response = StreamingHttpResponse(events, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


@require_POST
@login_required
def presence(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    """What this open board is editing now (an item key, or nothing)."""
    plan, _ = get_plan_for_user(request.user, slug)
    connection = request.POST.get("connection", "")
    if not connection or len(connection) > 40:
        raise BadRequest("No connection.")
    editing = request.POST.get("editing", "")
    if not live.touch_presence(plan.pk, request.user.pk, connection, editing):
        raise BadRequest("Not your connection.")
    return HttpResponse(status=204)
