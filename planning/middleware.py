"""Requests refused before any view sees them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from asgiref.sync import iscoroutinefunction
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.utils.decorators import sync_and_async_middleware

NUL_REFUSED = (
    "Your request contains a character we cannot store (a NUL byte). Remove it and send it again."
)

Handler = Callable[[HttpRequest], HttpResponse]
AsyncHandler = Callable[[HttpRequest], Awaitable[HttpResponse]]


@sync_and_async_middleware
def refuse_nul_bytes(get_response: Handler | AsyncHandler) -> Handler | AsyncHandler:
    """Answer 400 to a request with a NUL byte in its path or in a query or form parameter.
    PostgreSQL text cannot hold one: a filter, a comment or a presence key carrying it would
    fail deep in a view with a 500. Checked once here, every field of every view, present and
    future, is covered; file contents are not parameters and are left alone. A cookie with a
    NUL byte was never set by us: it is dropped (a session cookie carrying one would fail the
    session lookup for every page)."""
    if iscoroutinefunction(get_response):

        async def middleware_async(request: HttpRequest) -> HttpResponse:
            _drop_nul_cookies(request)
            if _has_nul(request):
                return _refusal()
            return await get_response(request)  # type: ignore[misc]

        return middleware_async

    def middleware(request: HttpRequest) -> HttpResponse:
        _drop_nul_cookies(request)
        if _has_nul(request):
            return _refusal()
        return get_response(request)  # type: ignore[return-value]

    return middleware


def _refusal() -> HttpResponse:
    return HttpResponseBadRequest(NUL_REFUSED, content_type="text/plain; charset=utf-8")


def _drop_nul_cookies(request: HttpRequest) -> None:
    cookies = request.COOKIES
    if any("\x00" in name or "\x00" in value for name, value in cookies.items()):
        request.COOKIES = {  # type: ignore[misc]
            name: value
            for name, value in cookies.items()
            if "\x00" not in name and "\x00" not in value
        }


def _has_nul(request: HttpRequest) -> bool:
    if "\x00" in request.path or _in_fields(request.GET.lists()):
        return True
    if request.method != "POST":
        return False
    try:
        fields = request.POST.lists()
    except OSError:
        # The client went away mid-upload: the view meets the same error, as it would have.
        return False
    return _in_fields(fields)


def _in_fields(fields: Iterable[tuple[str, list[str]]]) -> bool:
    return any("\x00" in name or any("\x00" in v for v in values) for name, values in fields)
