"""The live board: every change bumps the plan's version and signals open boards, which hear it
over server-sent events within a second; presence says who is here and what they edit.

Streams read the database from worker threads: those tests use `transaction=True`, so that
what the test writes is committed and visible there.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import uuid
from typing import Any
from urllib.parse import urlparse

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings as django_settings
from django.core.handlers.asgi import ASGIHandler
from django.db import connections, transaction
from django.db.models import F
from django.test import AsyncClient, Client
from django.urls import reverse

from planning import live
from planning.live import hub as live_hub
from planning.live import signals as live_signals
from planning.models import Assumption, Plan, Presence, StrategicChoice
from planning.services import record_activity, save_item, snapshot
from tests.conftest import need_service

streams = pytest.mark.django_db(transaction=True)
WITHIN = 1.0  # seconds: how soon an open board hears of a change


def run(scenario) -> Any:
    async def then_close():
        try:
            return await asyncio.wait_for(scenario, timeout=20)
        finally:
            # Views ran in asgiref's one long-lived thread: close its connection, or the test
            # database cannot be dropped at the end of the run (PostgreSQL).
            await sync_to_async(connections.close_all)()

    try:
        return asyncio.run(then_close())
    finally:
        live.close_pool()  # and the streams' database threads, their connections with them
        gc.collect()


def parse(chunk: bytes) -> dict | None:
    """One server-sent event, or None for a comment or the retry advice."""
    fields: dict[str, str] = {}
    for line in chunk.decode().strip().splitlines():
        name, _, value = line.partition(": ")
        fields[name] = value
    if "event" not in fields:
        return None
    return {"event": fields["event"], "data": json.loads(fields["data"]), "id": fields.get("id")}


class Board:
    """One open board's event stream, read event by event."""

    def __init__(self, chunks) -> None:
        self.chunks = chunks
        self.connection: str | None = None

    async def next(self, timeout: float = 3.0) -> dict:
        while True:
            event = parse(await asyncio.wait_for(anext(self.chunks), timeout))
            if event is not None:
                if event["event"] == "hello":
                    self.connection = event["data"]["connection"]
                return event

    async def until(self, event: str, timeout: float = 3.0) -> dict:
        """The next event of this kind, skipping others."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            found = await self.next(max(deadline - loop.time(), 0.01))
            if found["event"] == event:
                return found

    async def quiet(self, seconds: float) -> list[dict]:
        """Whatever the board hears in the next moments (nothing, usually)."""
        heard = []
        try:
            while True:
                heard.append(await self.next(seconds))
        except TimeoutError:
            return heard

    async def close(self) -> None:
        await self.chunks.aclose()


def open_stream(plan: Plan, user, last_version: int | None = None) -> Board:
    return Board(live.stream(plan.pk, user.pk, last_version))


@pytest.fixture
def no_polling(monkeypatch):
    """Boards re-read the plan only when signalled: a change heard in time came by signal."""
    monkeypatch.setattr(live_hub, "POLL_SECONDS", 30.0)


@pytest.fixture
def assumption(plan, cmo):
    choice = StrategicChoice.objects.create(plan=plan, title="Launch a loyalty subscription")
    return Assumption.objects.create(choice=choice, statement="Members buy again", importance=3)


def save_importance(assumption, actor, importance: int) -> None:
    item = Assumption.objects.get(pk=assumption.pk)
    base = snapshot(item)
    result = save_item(
        item, actor, base_version=item.version, base=base, mine={**base, "importance": importance}
    )
    assert isinstance(result, Assumption)


def plan_version(plan: Plan) -> int:
    return Plan.objects.values_list("version", flat=True).get(pk=plan.pk)


# --- the version and the signal ---------------------------------------------------------------


@pytest.mark.django_db
def test_record_activity_bumps_the_version_and_signals_on_commit(
    plan, cmo, django_capture_on_commit_callbacks
):
    before = plan_version(plan)
    with django_capture_on_commit_callbacks() as callbacks:
        record_activity(plan, cmo.user, "updated", "choice", item_id=1, item_label="Loyalty")
    assert plan_version(plan) == before + 1
    assert len(callbacks) == 1  # the signal waits for the commit


@pytest.mark.django_db
def test_a_rolled_back_change_signals_nothing(plan, cmo, django_capture_on_commit_callbacks):
    before = plan_version(plan)
    with django_capture_on_commit_callbacks() as callbacks:
        with pytest.raises(RuntimeError), transaction.atomic():
            record_activity(plan, cmo.user, "updated", "choice", item_id=1, item_label="Loyalty")
            raise RuntimeError("the save failed")
    assert plan_version(plan) == before
    assert callbacks == []


@streams
def test_the_stream_says_hello_then_catches_up_then_shows_who_is_here(plan, cmo):
    version = plan_version(plan)

    async def scenario():
        board = open_stream(plan, cmo.user, last_version=version - 1)
        hello = await board.next()
        changed = await board.next()
        presence = await board.next()
        await board.close()
        return hello, changed, presence

    hello, changed, presence = run(scenario())
    assert hello["event"] == "hello" and len(hello["data"]["connection"]) == 32
    assert changed["event"] == "changed" and changed["id"] == str(version)
    assert changed["data"]["version"] == version
    assert presence["event"] == "presence"
    assert presence["data"] == [
        {"id": cmo.user.pk, "name": "Ana Tester", "role": "CMO", "editing": []}
    ]
    assert not Presence.objects.exists()  # closing the board left the plan


@streams
def test_a_board_that_saw_the_latest_version_is_not_told_again(plan, cmo):
    current = plan_version(plan)

    async def scenario():
        board = open_stream(plan, cmo.user, last_version=current)
        events = [await board.next(), await board.next(), *await board.quiet(0.8)]
        await board.close()
        return [e["event"] for e in events]

    assert run(scenario()) == ["hello", "presence"]


@streams
def test_another_members_save_reaches_an_open_board_within_a_second(
    plan, cmo, cio, assumption, no_polling
):
    current = plan_version(plan)

    async def scenario():
        board = open_stream(plan, cmo.user, last_version=current)
        await board.until("presence")
        loop = asyncio.get_running_loop()
        started = loop.time()
        await sync_to_async(save_importance)(assumption, cio.user, 5)
        changed = await board.until("changed", timeout=WITHIN)
        took = loop.time() - started
        await board.close()
        return changed, took

    changed, took = run(scenario())
    assert changed["data"]["version"] == plan_version(plan)
    assert changed["id"] == str(plan_version(plan))
    assert took < WITHIN


@streams
def test_every_open_board_of_the_plan_hears_it_and_no_other(plan, cmo, cio, assumption, no_polling):
    from planning.services import create_plan

    other = create_plan("Another plan", "another")
    from planning.models import Membership

    Membership.objects.create(plan=other, user=cmo.user, role="cmo")

    current = plan_version(plan)

    async def scenario():
        boards = [open_stream(plan, cmo.user, current) for _ in range(3)]
        elsewhere = open_stream(other, cmo.user, other.version)
        for board in [*boards, elsewhere]:
            await board.until("presence")
        await sync_to_async(save_importance)(assumption, cio.user, 5)
        heard = [await board.until("changed", timeout=WITHIN) for board in boards]
        unrelated = await elsewhere.quiet(0.5)
        for board in [*boards, elsewhere]:
            await board.close()
        return heard, unrelated

    heard, unrelated = run(scenario())
    assert [h["data"]["version"] for h in heard] == [plan_version(plan)] * 3
    assert [e["event"] for e in unrelated if e["event"] == "changed"] == []


@streams
def test_a_change_from_another_process_arrives_by_polling(plan, cmo, monkeypatch):
    """A Celery worker without Redis cannot wake the board: the poll finds the new version."""
    monkeypatch.setattr(live_hub, "POLL_SECONDS", 0.2)

    current = plan_version(plan)

    async def scenario():
        board = open_stream(plan, cmo.user, last_version=current)
        await board.until("presence")
        await sync_to_async(Plan.objects.filter(pk=plan.pk).update)(version=F("version") + 1)
        changed = await board.until("changed", timeout=WITHIN)
        await board.close()
        return changed

    assert run(scenario())["data"]["version"] == plan_version(plan)


@streams
def test_a_deleted_plan_ends_the_stream(plan, cmo):
    current = plan_version(plan)

    async def scenario():
        board = open_stream(plan, cmo.user, last_version=current)
        await board.until("presence")
        await sync_to_async(Plan.objects.filter(pk=plan.pk).delete)()
        live.publish(plan.pk)
        gone = await board.until("gone")
        with pytest.raises(StopAsyncIteration):
            await board.next()
        return gone

    assert run(scenario())["event"] == "gone"


@streams
def test_a_member_removed_from_the_plan_hears_no_more(plan, cmo, cio, assumption, no_polling):
    current = plan_version(plan)

    async def scenario():
        board = open_stream(plan, cio.user, last_version=current)
        await board.until("presence")
        await sync_to_async(cio.membership.delete)()
        await sync_to_async(save_importance)(assumption, cmo.user, 5)
        gone = await board.until("gone", timeout=WITHIN)
        with pytest.raises(StopAsyncIteration):
            await board.next()
        return gone

    assert run(scenario())["event"] == "gone"


# --- presence ---------------------------------------------------------------------------------


def presence_url(plan: Plan) -> str:
    return reverse("planning:presence", args=[plan.slug])


@streams
def test_presence_shows_who_is_here_what_they_edit_and_who_left(plan, cmo, cio, no_polling):
    current = plan_version(plan)

    async def scenario():
        mine = open_stream(plan, cmo.user, current)
        assert (await mine.next())["event"] == "hello"
        await mine.until("presence")

        theirs = open_stream(plan, cio.user, current)
        await theirs.next()
        both = await mine.until("presence", timeout=WITHIN)

        post = sync_to_async(cio.client.post)
        response = await post(
            presence_url(plan), {"connection": theirs.connection, "editing": "assumption-7"}
        )
        assert response.status_code == 204
        editing = await mine.until("presence", timeout=WITHIN)

        await theirs.close()
        left = await mine.until("presence", timeout=WITHIN)
        await mine.close()
        return both, editing, left

    both, editing, left = run(scenario())
    ana = {"id": cmo.user.pk, "name": "Ana Tester", "role": "CMO", "editing": []}
    maya = {"id": cio.user.pk, "name": "Maya Tester", "role": "CIO", "editing": []}
    assert both["data"] == [ana, maya]
    assert editing["data"] == [ana, {**maya, "editing": ["assumption-7"]}]
    assert left["data"] == [ana]


@streams
def test_one_person_with_two_boards_is_listed_once(plan, cmo, cio, no_polling):
    current = plan_version(plan)

    async def scenario():
        boards = [open_stream(plan, cio.user, current) for _ in range(2)]
        for board in boards:
            await board.next()
        await sync_to_async(cio.client.post)(
            presence_url(plan), {"connection": boards[1].connection, "editing": "choice-3"}
        )
        seen = await boards[0].until("presence")
        while seen["data"][0]["editing"] != ["choice-3"]:
            seen = await boards[0].until("presence", timeout=WITHIN)
        for board in boards:
            await board.close()
        return seen

    assert run(scenario())["data"] == [
        {"id": cio.user.pk, "name": "Maya Tester", "role": "CIO", "editing": ["choice-3"]}
    ]


@pytest.mark.django_db
def test_presence_is_for_members_only(plan, cmo, cio, observer, outsider):
    Presence.objects.create(
        plan=plan, user=cio.user, connection="c" * 32, last_seen="2026-11-01T00:00Z"
    )
    address = presence_url(plan)
    assert outsider.client.post(address, {"connection": "x" * 32}).status_code == 404
    assert Client().post(address, {"connection": "x" * 32}).status_code == 302
    assert cmo.client.get(address).status_code == 405
    assert cmo.client.post(address, {}).status_code == 400
    assert cmo.client.post(address, {"connection": "x" * 41}).status_code == 400
    # Someone else's board is not mine to speak for.
    assert cmo.client.post(address, {"connection": "c" * 32, "editing": "x"}).status_code == 400
    assert Presence.objects.get(connection="c" * 32).user == cio.user
    # Only a board's own stream makes its presence: a made-up connection makes nothing.
    assert observer.client.post(address, {"connection": "o" * 32}).status_code == 400
    assert not Presence.objects.filter(connection="o" * 32).exists()
    # Observers are present too; saying what they look at changes nothing in the plan.
    live.open_presence(plan.pk, observer.user.pk, "o" * 32)
    version = plan_version(plan)
    assert observer.client.post(address, {"connection": "o" * 32, "editing": ""}).status_code == 204
    assert plan_version(plan) == version


# --- the events view, served through Django's ASGI handler ------------------------------------


def events_url(plan: Plan) -> str:
    return reverse("planning:events", args=[plan.slug])


@pytest.mark.django_db
def test_events_are_for_members_only(plan, outsider):
    response = outsider.client.get(events_url(plan))
    assert response.status_code == 404
    assert plan.name.encode() not in response.content
    anonymous = Client().get(events_url(plan))
    assert anonymous.status_code == 302
    assert anonymous.headers["Location"] == f"/accounts/login/?next={events_url(plan)}"


@streams
def test_events_view_streams_to_members_and_catches_up_from_last_event_id(plan, observer):
    version = plan_version(plan)

    async def scenario():
        client = AsyncClient()
        await client.aforce_login(observer.user)
        response = await client.get(events_url(plan), headers={"Last-Event-ID": str(version - 1)})
        assert response.status_code == 200
        board = Board(aiter(response.streaming_content))
        events = [await board.next(), await board.next(), await board.next()]
        await board.close()
        with_v = await client.get(events_url(plan), {"v": str(version)})
        board = Board(aiter(with_v.streaming_content))
        again = [await board.next(), await board.next()]
        await board.close()
        post = await client.post(events_url(plan))
        return response, events, again, post.status_code

    response, events, again, post_status = run(scenario())
    assert response["Content-Type"] == "text/event-stream"
    assert response["Cache-Control"] == "no-cache"
    assert [e["event"] for e in events] == ["hello", "changed", "presence"]
    assert events[1]["data"]["version"] == version
    assert [e["event"] for e in again] == ["hello", "presence"]
    assert post_status == 405


class AsgiBoard:
    """A browser's GET of the events URL through Django's ASGI handler, as uvicorn runs it:
    the body arrives chunk by chunk, and closing the tab is an `http.disconnect`."""

    def __init__(self, path: str, session: str, last_event_id: int) -> None:
        url = urlparse(path)
        self.scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": url.path,
            "raw_path": url.path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [
                (b"host", b"testserver"),
                (b"cookie", f"{django_settings.SESSION_COOKIE_NAME}={session}".encode()),
                (b"last-event-id", str(last_event_id).encode()),
            ],
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
        }
        self.sent: asyncio.Queue = asyncio.Queue()
        self.left = asyncio.Event()

    async def receive(self) -> dict:
        if not getattr(self, "_requested", False):
            self._requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self.left.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict) -> None:
        await self.sent.put(message)

    async def open(self) -> tuple[int, dict]:
        self.task = asyncio.create_task(ASGIHandler()(self.scope, self.receive, self.send))
        start = await asyncio.wait_for(self.sent.get(), 5)
        return start["status"], {k.decode().lower(): v.decode() for k, v in start["headers"]}

    async def chunks(self):
        while True:
            message = await self.sent.get()
            yield message.get("body", b"")

    async def leave(self) -> None:
        self.left.set()
        await asyncio.wait_for(self.task, 5)


@streams
def test_through_asgi_a_member_sees_changes_and_leaving_removes_them(
    plan, cmo, cio, assumption, no_polling
):
    login = Client()
    login.force_login(cmo.user)
    session = login.cookies[django_settings.SESSION_COOKIE_NAME].value
    version = plan_version(plan)

    async def scenario():
        browser = AsgiBoard(events_url(plan), session, version)
        status, headers = await browser.open()
        board = Board(browser.chunks())
        first = [await board.next(), await board.next()]
        await sync_to_async(save_importance)(assumption, cio.user, 5)
        changed = await board.until("changed", timeout=WITHIN)
        present = await sync_to_async(live.present)(plan.pk)
        await browser.leave()
        after = await sync_to_async(live.present)(plan.pk)
        return status, headers, first, changed, present, after

    status, headers, first, changed, present, after = run(scenario())
    assert status == 200
    assert headers["content-type"] == "text/event-stream"
    assert [e["event"] for e in first] == ["hello", "presence"]
    assert changed["data"]["version"] == version + 1
    assert [p["name"] for p in present] == ["Ana Tester"]
    assert after == []


# --- across processes: Redis ------------------------------------------------------------------


@pytest.fixture
def redis_url(settings, monkeypatch):
    url = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    parsed = urlparse(url)
    need_service("Redis", parsed.hostname or "127.0.0.1", parsed.port or 6379)
    settings.REDIS_URL = url
    # A channel of our own: other test runs on this Redis cannot wake our boards.
    monkeypatch.setattr(live_signals, "CHANNEL_PREFIX", f"outside-in-test-{uuid.uuid4().hex}:plan:")
    return url


async def _subscribed(url: str) -> None:
    """Wait until this process's shared subscriber listens (a message published earlier is
    lost): a probe on our own channel prefix reaches one receiver once it does."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    try:
        for _ in range(100):
            if await client.publish(f"{live_signals.CHANNEL_PREFIX}0", "probe") >= 1:
                return
            await asyncio.sleep(0.05)
        raise AssertionError("the live-update subscriber never subscribed")
    finally:
        await client.aclose()


@pytest.mark.services
@streams
def test_with_redis_a_change_made_in_another_process_arrives_within_a_second(
    plan, cmo, redis_url, no_polling
):
    import redis

    current = plan_version(plan)

    async def scenario():
        board = open_stream(plan, cmo.user, last_version=current)
        await board.until("presence")
        await _subscribed(redis_url)
        loop = asyncio.get_running_loop()
        started = loop.time()
        # Another process (a Celery worker, another server) changes the plan and publishes:
        # nothing in this process is woken but through Redis.
        await sync_to_async(Plan.objects.filter(pk=plan.pk).update)(version=F("version") + 1)
        redis.Redis.from_url(redis_url).publish(f"{live_signals.CHANNEL_PREFIX}{plan.pk}", "1")
        changed = await board.until("changed", timeout=WITHIN)
        took = loop.time() - started
        await board.close()
        return changed, took

    changed, took = run(scenario())
    assert changed["data"]["version"] == plan_version(plan)
    assert took < WITHIN


@pytest.mark.services
@streams
def test_with_redis_a_save_is_published_and_heard(
    plan, cmo, cio, assumption, redis_url, no_polling
):
    import redis

    listener = redis.Redis.from_url(redis_url).pubsub()
    listener.subscribe(f"{live_signals.CHANNEL_PREFIX}{plan.pk}")
    listener.get_message(timeout=1)  # the subscription's confirmation

    current = plan_version(plan)

    async def scenario():
        board = open_stream(plan, cmo.user, last_version=current)
        await board.until("presence")
        await _subscribed(redis_url)
        await sync_to_async(save_importance)(assumption, cio.user, 5)
        changed = await board.until("changed", timeout=WITHIN)
        await board.close()
        return changed

    assert run(scenario())["data"]["version"] == plan_version(plan)
    published = [listener.get_message(timeout=1) for _ in range(3)]
    assert any(m and m["type"] == "message" for m in published)
    listener.close()


@streams
def test_with_redis_down_a_save_still_succeeds_and_boards_poll(
    plan, cmo, cio, assumption, settings, monkeypatch, caplog
):
    from tests.conftest import free_port

    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    monkeypatch.setattr(live_hub, "POLL_SECONDS", 0.2)
    caplog.set_level(logging.WARNING, logger="planning.live")

    current = plan_version(plan)

    async def scenario():
        board = open_stream(plan, cmo.user, last_version=current)
        await board.until("presence")
        await sync_to_async(save_importance)(assumption, cio.user, 5)
        changed = await board.until("changed", timeout=WITHIN)
        await board.close()
        return changed

    assert run(scenario())["data"]["version"] == plan_version(plan)
    assert Assumption.objects.get(pk=assumption.pk).importance == 5
    assert "could not publish a live update" in caplog.text


# --- limits -------------------------------------------------------------------------------------


@streams
def test_past_a_persons_cap_the_events_url_answers_429_with_when_to_come_back(
    plan, cmo, cio, settings
):
    settings.LIVE_MAX_STREAMS_PER_USER = 2

    async def scenario():
        client = AsyncClient()
        await client.aforce_login(cmo.user)
        boards = [open_stream(plan, cmo.user) for _ in range(2)]
        for board in boards:
            await board.until("presence")
        refused = await client.get(events_url(plan))
        # Someone else still gets in.
        theirs = open_stream(plan, cio.user)
        await theirs.until("presence")
        await theirs.close()
        await boards[0].close()
        again = await client.get(events_url(plan))
        await boards[1].close()
        return refused, again.status_code

    refused, again = run(scenario())
    assert refused.status_code == 429
    assert refused["Retry-After"] == "30"
    assert refused.content.decode() == (
        "You have 2 live boards open, the most allowed: close one in another tab or window."
    )
    assert again == 200  # a closed board gave its place back
    assert not Presence.objects.exists()


@streams
def test_past_the_process_cap_nobody_gets_another_stream(plan, cmo, cio, settings):
    settings.LIVE_MAX_STREAMS = 1

    async def scenario():
        mine = open_stream(plan, cmo.user)
        await mine.until("presence")
        with pytest.raises(live.Full, match="as many live connections as it can hold"):
            live.stream(plan.pk, cio.user.pk, None)
        await mine.close()
        theirs = open_stream(plan, cio.user)
        await theirs.until("hello")
        await theirs.close()

    run(scenario())


@streams
def test_a_stream_dropped_before_it_started_gives_its_place_back(plan, cmo, settings):
    settings.LIVE_MAX_STREAMS_PER_USER = 1

    async def scenario():
        live.stream(plan.pk, cmo.user.pk, None)  # the browser left before the first byte
        gc.collect()
        board = open_stream(plan, cmo.user)
        await board.until("hello")
        await board.close()

    run(scenario())


@streams
def test_many_boards_of_one_plan_share_their_reads(plan, cmo, cio, assumption, no_polling):
    """After a save, the plan's state, changes and presence are read once for all open boards
    of this process, not once per board."""
    current = plan_version(plan)
    reads = []

    def counted(func):
        def wrapper(*args):
            reads.append(func.__name__)
            return func(*args)

        wrapper.__name__ = func.__name__
        return wrapper

    async def scenario():
        boards = [open_stream(plan, cmo.user, current) for _ in range(6)]
        for board in boards:
            await board.until("presence")
        await asyncio.sleep(0.3)  # the boards' opening signals settle
        reads.clear()
        await sync_to_async(save_importance)(assumption, cio.user, 5)
        for board in boards:
            await board.until("changed", timeout=WITHIN)
        await asyncio.gather(*(board.quiet(0.3) for board in boards))  # and what follows it
        counted_reads = list(reads)
        for board in boards:
            await board.close()
        return counted_reads

    with pytest.MonkeyPatch.context() as patch:
        for name in ("read_state", "present", "changes_between"):
            patch.setattr(live_hub, name, counted(getattr(live_hub, name)))
        seen = run(scenario())
    # Once per signal, whatever the number of boards (a late signal of a board's opening may
    # add one more round).
    counts = {name: seen.count(name) for name in ("read_state", "present", "changes_between")}
    assert counts["changes_between"] == 1
    assert 1 <= counts["read_state"] <= 2 and 1 <= counts["present"] <= 2, seen


@streams
def test_the_room_follows_the_facilitator_within_a_second(plan, cmo, facilitator, no_polling):
    """A running workshop session (DOMAIN §11): each move of the facilitator reaches an open
    stream as a `room` event with the session's new revision and the room's URL; when it ends,
    the stream says no session runs."""
    from planning.sessions import agenda, room

    session = agenda.create_session(
        plan, facilitator.user, title="Workshop", date=plan.created_at.date(), template="review"
    )
    room.start_session(session)
    session.refresh_from_db()
    url = reverse("planning:session", args=[plan.slug, session.pk])
    version = plan_version(plan)

    async def scenario():
        board = open_stream(plan, cmo.user, last_version=version)
        first = await board.until("room")
        loop = asyncio.get_running_loop()
        started = loop.time()
        await sync_to_async(room.next_step)(session)
        moved = await board.until("room", timeout=WITHIN)
        took = loop.time() - started
        await sync_to_async(room.end_session)(session)
        ended = await board.until("room", timeout=WITHIN)
        await board.close()
        return first, moved, ended, took

    first, moved, ended, took = run(scenario())
    assert first["data"] == {"session": session.pk, "revision": session.revision, "url": url}
    assert moved["data"]["revision"] > session.revision and moved["data"]["url"] == url
    assert took < WITHIN
    assert ended["data"] == {"session": None, "revision": 0, "url": ""}
