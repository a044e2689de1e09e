"""Two members edit the same item: changes to different fields merge, the same field conflicts,
and nothing anyone saved is ever silently lost — also under 50 concurrent writers."""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from html.parser import HTMLParser

import pytest
from django.db import connection, connections
from django.urls import reverse

from planning.models import Activity, Assumption, Plan, StrategicChoice
from planning.services import Conflict, save_item, snapshot
from tests.conftest import REQUIRE_SERVICES
from tests.planning.test_editing import post_data

HTMX = {"HX-Request": "true"}


@pytest.fixture
def choice(plan, cmo):
    choice = StrategicChoice.objects.create(
        plan=plan,
        title="Launch a loyalty subscription",
        owner=cmo.membership,
        business_unit="Retail",
    )
    choice.stages.set(plan.stages.filter(name__in=["Buy", "Engage"]))
    return choice


@pytest.fixture
def assumption(choice, cmo):
    return Assumption.objects.create(
        choice=choice,
        statement="At least 30% of first-time buyers buy again within 90 days",
        importance=3,
        evidence=2,
        owner=cmo.membership,
        metric="repeat_rate",
        params={"event_type": "purchase", "within_days": 90},
        comparator=">=",
        threshold=0.3,
    )


class FormReader(HTMLParser):
    """The values a browser would post from the first form of a page, buttons aside."""

    def __init__(self) -> None:
        super().__init__()
        self.values: dict[str, list[str]] = {}
        self.textarea: str | None = None
        self.select: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        name = a.get("name")
        if tag == "input" and name and a.get("type") not in {"submit", "button"}:
            if a.get("type") in {"checkbox", "radio"} and "checked" not in a:
                self.values.setdefault(name, [])
                return
            self.values.setdefault(name, []).append(a.get("value") or "")
        elif tag == "textarea" and name:
            self.textarea = name
            self.values[name] = [""]
        elif tag == "select" and name:
            self.select = name
            self.values.setdefault(name, [])
        elif tag == "option" and self.select and "selected" in a:
            self.values[self.select].append(a.get("value") or "")

    def handle_data(self, data):
        if self.textarea:
            self.values[self.textarea][0] += data

    def handle_endtag(self, tag):
        if tag == "textarea":
            self.textarea = None
        elif tag == "select":
            self.select = None


def form_values(html: str) -> dict[str, list[str]]:
    reader = FormReader()
    reader.feed(html)
    # A textarea's content starts after the newline Django writes after the opening tag.
    return {name: [v.removeprefix("\n") for v in vs] for name, vs in reader.values.items()}


def open_form(who, plan: Plan, item) -> dict[str, list[str]]:
    """What a member's edit form holds when they open it."""
    address = reverse("planning:assumption_edit", args=[plan.slug, item.pk])
    response = who.client.get(address, headers=HTMX)
    assert response.status_code == 200
    return form_values(response.content.decode())


def submit(who, plan: Plan, item, form: dict, htmx: bool = True, **changes):
    """Post an opened form with some fields changed, as the member typed them."""
    data = {**form, **{k: [str(v)] for k, v in post_data(changes).items()}}
    address = reverse("planning:assumption_edit", args=[plan.slug, item.pk])
    return who.client.post(address, data, headers=HTMX if htmx else {})


def test_the_form_carries_the_values_it_was_opened_with(plan, assumption, cio):
    form = open_form(cio, plan, assumption)
    assert json.loads(form["base"][0]) == snapshot(assumption)
    assert form["version"] == [str(assumption.version)]
    assert form["statement"] == [assumption.statement]
    assert form["param_within_days"] == ["90"]
    # Posted back untouched, it changes nothing.
    before = Activity.objects.count()
    assert submit(cio, plan, assumption, form).status_code == 200
    assert Activity.objects.count() == before


def test_changes_to_different_fields_are_both_kept(plan, assumption, cmo, cio):
    form_a, form_b = open_form(cmo, plan, assumption), open_form(cio, plan, assumption)
    statement = "At least 35% of first-time buyers buy again within 90 days"

    assert submit(cmo, plan, assumption, form_a, statement=statement).status_code == 200
    response = submit(cio, plan, assumption, form_b, importance=5)

    assert response.status_code == 200
    assert "Someone else saved" not in response.content.decode()
    assumption.refresh_from_db()
    assert (assumption.statement, assumption.importance) == (statement, 5)
    assert assumption.version == 3
    updates = list(Activity.objects.filter(action="updated").order_by("id"))
    assert [(u.actor, u.before, u.after) for u in updates] == [
        (cmo.user, {"statement": form_a["statement"][0]}, {"statement": statement}),
        (cio.user, {"importance": 3}, {"importance": 5}),
    ]
    # B's card shows both changes.
    assert statement in response.content.decode()
    assert "Importance 5/5" in response.content.decode()


def test_the_same_value_saved_by_both_is_no_conflict(plan, assumption, cmo, cio):
    form_a, form_b = open_form(cmo, plan, assumption), open_form(cio, plan, assumption)
    statement = "Half of first-time buyers come back"
    assert submit(cmo, plan, assumption, form_a, statement=statement).status_code == 200
    response = submit(cio, plan, assumption, form_b, statement=statement)
    assert response.status_code == 200
    assumption.refresh_from_db()
    assert (assumption.statement, assumption.version) == (statement, 2)
    assert Activity.objects.filter(action="updated").count() == 1


def theirs_and_mine(html: str) -> dict[str, tuple[str, str]]:
    rows = re.findall(
        r'<tr data-field="(\w+)"><th scope="row">[^<]*</th>'
        r'<td class="theirs">([^<]*)</td><td class="mine">([^<]*)</td></tr>',
        html,
    )
    return {name: (theirs, mine) for name, theirs, mine in rows}


@pytest.fixture
def clash(plan, assumption, cmo, cio):
    """A saved a new statement and evidence; B, from the same base, a different statement."""
    form_a, form_b = open_form(cmo, plan, assumption), open_form(cio, plan, assumption)
    theirs = "At least 35% of first-time buyers buy again within 90 days"
    mine = "At least 25% of first-time buyers buy again within 60 days"
    response = submit(cmo, plan, assumption, form_a, statement=theirs, evidence=4)
    assert response.status_code == 200
    assumption.refresh_from_db()
    saved = (snapshot(assumption), assumption.version, Activity.objects.count())
    response = submit(cio, plan, assumption, form_b, statement=mine, importance=5)
    return {"response": response, "theirs": theirs, "mine": mine, "saved": saved}


def test_the_same_field_changed_by_both_is_a_conflict_and_nothing_is_saved(plan, assumption, clash):
    response = clash["response"]
    html = response.content.decode()
    assert response.status_code == 409
    assert "<html" not in html
    assert "Someone else saved this assumption while you were editing." in html
    assert theirs_and_mine(html) == {"statement": (clash["theirs"], clash["mine"])}
    assert ">Keep mine</button>" in html and ">Keep theirs</button>" in html
    assumption.refresh_from_db()
    assert (snapshot(assumption), assumption.version, Activity.objects.count()) == clash["saved"]


def test_the_conflict_form_holds_mine_over_theirs_on_the_current_base(plan, assumption, clash):
    form = form_values(clash["response"].content.decode())
    assumption.refresh_from_db()
    # Mine where I changed something, theirs everywhere else.
    assert form["statement"] == [clash["mine"]]
    assert form["importance"] == ["5"]
    assert form["evidence"] == ["4"]
    assert form["param_within_days"] == ["90"]
    assert json.loads(form["base"][0]) == snapshot(assumption)
    assert form["version"] == [str(assumption.version)]


def test_keep_mine_saves_my_value(plan, assumption, cio, clash):
    form = form_values(clash["response"].content.decode())
    response = cio.client.post(
        reverse("planning:assumption_edit", args=[plan.slug, assumption.pk]),
        {**form, "resolve": "mine"},
        headers=HTMX,
    )
    assert response.status_code == 200
    assert clash["mine"] in response.content.decode()
    assumption.refresh_from_db()
    assert (assumption.statement, assumption.importance, assumption.evidence) == (
        clash["mine"],
        5,
        4,
    )
    entry = Activity.objects.filter(action="updated").first()
    assert entry.actor == cio.user
    assert entry.before == {"statement": clash["theirs"], "importance": 3}
    assert entry.after == {"statement": clash["mine"], "importance": 5}


@pytest.mark.parametrize("htmx", [True, False])
def test_keep_theirs_shows_the_current_card_and_saves_nothing(plan, assumption, cio, clash, htmx):
    form = form_values(clash["response"].content.decode())
    response = cio.client.post(
        reverse("planning:assumption_edit", args=[plan.slug, assumption.pk]),
        {**form, "resolve": "theirs"},
        headers=HTMX if htmx else {},
    )
    assumption.refresh_from_db()
    assert (snapshot(assumption), assumption.version, Activity.objects.count()) == clash["saved"]
    if htmx:
        assert response.status_code == 200
        html = response.content.decode()
        assert html.lstrip().startswith(
            f'<article class="assumption" id="assumption-{assumption.pk}-in-'
        )
        assert clash["theirs"] in html and clash["mine"] not in html
    else:
        assert response.status_code == 302
        assert f"#assumption-{assumption.pk}-in-" in response.headers["Location"]


def test_a_conflict_without_javascript_is_a_whole_page(plan, assumption, cmo, cio):
    form_a, form_b = open_form(cmo, plan, assumption), open_form(cio, plan, assumption)
    submit(cmo, plan, assumption, form_a, statement="Theirs")
    response = submit(cio, plan, assumption, form_b, htmx=False, statement="Mine")
    html = response.content.decode()
    assert response.status_code == 409
    assert "<html" in html
    assert theirs_and_mine(html) == {"statement": ("Theirs", "Mine")}


def test_a_conflict_on_a_relation_names_things_not_ids(plan, choice, cmo, cio, bu_leader):
    address = reverse("planning:choice_edit", args=[plan.slug, choice.pk])
    forms = [form_values(who.client.get(address).content.decode()) for who in (cmo, cio)]
    stage = {s.name: s.pk for s in plan.stages.all()}
    cmo.client.post(address, {**forms[0], "stages": [stage["Use"]], "owner": cio.membership.pk})
    response = cio.client.post(
        address, {**forms[1], "stages": [stage["Ask"]], "owner": bu_leader.membership.pk}
    )
    assert response.status_code == 409
    rows = theirs_and_mine(response.content.decode())
    assert rows["stages"] == ("Use", "Ask")
    assert rows["owner"] == ("Maya Tester (CIO)", "Raj Tester (BU leader)")


# --- many writers at once (PostgreSQL: real row locks) ----------------------------------------

WRITERS = 50
FIELDS = {
    "assumption": ["statement", "min_sample", "segment", "channel", "window_days"],
    "choice": ["title", "business_unit", "rationale"],
}


def value_for(field: str, writer: int):
    return writer + 100 if field in {"min_sample", "window_days"} else f"{field} by writer {writer}"


def _needs_postgresql() -> None:
    if connection.vendor != "postgresql":
        message = "50 concurrent writers need PostgreSQL's row locks (set DATABASE_URL)"
        if REQUIRE_SERVICES:
            pytest.fail(message + " and REQUIRE_SERVICES=1")
        pytest.skip(message)


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("kind", ["assumption", "choice"])
@pytest.mark.parametrize("spread", [True, False], ids=["several-fields", "one-field"])
def test_fifty_concurrent_writers_lose_no_update(request, plan, cmo, kind, spread):
    _needs_postgresql()
    item = request.getfixturevalue(kind)
    model = type(item)
    base, base_version = snapshot(item), item.version
    plan_version = Plan.objects.get(pk=plan.pk).version
    fields = FIELDS[kind] if spread else FIELDS[kind][:1]
    wanted = [{fields[i % len(fields)]: value_for(fields[i % len(fields)], i)} for i in range(50)]
    results: list = [None] * WRITERS
    # A writer that cannot start (no connection left) breaks the barrier for all: the test
    # fails at once with the cause instead of waiting forever.
    start = threading.Barrier(WRITERS, timeout=60)

    def write(i: int) -> None:
        try:
            mine = model.objects.get(pk=item.pk)  # each thread: its own connection
            start.wait()
            results[i] = save_item(
                mine, cmo.user, base_version=base_version, base=base, mine={**base, **wanted[i]}
            )
        except Exception as error:
            start.abort()
            results[i] = error
        finally:
            connections.close_all()

    threads = [threading.Thread(target=write, args=(i,)) for i in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    errors = [r for r in results if not isinstance(r, (model, Conflict))]
    assert errors == []
    applied = [i for i, r in enumerate(results) if isinstance(r, model)]
    conflicts = [r for r in results if isinstance(r, Conflict)]
    assert len(applied) + len(conflicts) == WRITERS
    # The first writer of each field wins; every later one of that field hears of it.
    assert len(applied) == len(fields)
    assert Counter(next(iter(wanted[i])) for i in applied) == Counter(fields)
    assert all(c.fields == list(wanted[results.index(c)]) for c in conflicts)

    item.refresh_from_db()
    assert item.version == base_version + len(applied)
    assert Plan.objects.get(pk=plan.pk).version == plan_version + len(applied)
    updates = list(
        Activity.objects.filter(item_type=kind, item_id=item.pk, action="updated").order_by("id")
    )
    assert sorted(json.dumps(u.after, sort_keys=True) for u in updates) == sorted(
        json.dumps(wanted[i], sort_keys=True) for i in applied
    )
    # Replaying the applied saves in the order they were recorded gives the final state, and
    # each one's "before" is what the previous ones left: no save was overwritten unseen.
    replay = dict(base)
    for update in updates:
        assert update.before == {name: replay[name] for name in update.after}
        replay.update(update.after)
    assert snapshot(item) == replay
    for i in applied:
        assert all(snapshot(item)[name] == value for name, value in wanted[i].items())
