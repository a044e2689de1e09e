"""The back-office: every model in the admin, for staff only, and fast on big tables."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from insights.admin import EstimatedCountPaginator
from insights.models import (
    AssumptionHistory,
    AssumptionRun,
    DigestDelivery,
    Event,
    Import,
    PlanDataSource,
    PlanRetest,
)
from lifecycle.models import DEFAULT_STAGES, EventMapping, Stage
from planning.models import (
    Activity,
    Assumption,
    AssumptionStatus,
    BTInitiative,
    Comment,
    Decision,
    Invitation,
    ItemKind,
    MapPlacement,
    Membership,
    PendingJob,
    Plan,
    Presence,
    Role,
    SessionNote,
    SessionStep,
    SessionVote,
    StepKind,
    StrategicChoice,
    WorkshopSession,
)
from planning.services import create_plan, record_activity
from planning.sessions.agenda import create_session
from planning.sessions.room import start_session

MODELS = [
    Stage,
    EventMapping,
    Plan,
    Membership,
    StrategicChoice,
    Assumption,
    BTInitiative,
    Comment,
    Activity,
    Import,
    Event,
    AssumptionRun,
    AssumptionHistory,
    PlanRetest,
    DigestDelivery,
    PlanDataSource,
    Presence,
    Invitation,
    PendingJob,
    WorkshopSession,
    SessionStep,
    SessionNote,
    SessionVote,
    MapPlacement,
    Decision,
]
# Rows that only the app writes: imports and their events come from files, history from use,
# invitations from the members page (which e-mails them), sessions and what their room wrote
# from the plan's sessions pages.
NO_ADD = {
    Activity,
    AssumptionRun,
    AssumptionHistory,
    Import,
    Event,
    PlanRetest,
    DigestDelivery,
    Presence,
    Invitation,
    PendingJob,
    WorkshopSession,
    SessionStep,
    SessionNote,
    SessionVote,
    MapPlacement,
    Decision,
}
SESSION_ROWS = [SessionNote, SessionVote, MapPlacement, Decision]
HISTORY = {Activity, AssumptionRun, AssumptionHistory, PlanRetest}
APPS = {"lifecycle", "planning", "insights"}
ON_POSTGRESQL = connection.vendor == "postgresql"
START = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
PLAIN_EVENT_COUNT = re.compile(r'^\s*SELECT COUNT\(\*\) AS "__count" FROM "insights_event"', re.I)


def url(model, view: str = "changelist", *args) -> str:
    opts = model._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_{view}", args=args)


def make_events(plan: Plan, count: int, *, start: int = 0, upload: Import | None = None) -> None:
    Event.objects.bulk_create(
        Event(
            plan=plan,
            source_import=upload,
            customer_id=f"c{i % 500}",
            occurred_at=START + dt.timedelta(minutes=i),
            event_type="purchase" if i % 3 else "visit",
            value=Decimal("19.90"),
            event_id=f"e{i}",
            dedupe_key=Event.identity(f"e{i}", {}, 0),
        )
        for i in range(start, start + count)
    )


def fill_plan(plan: Plan, membership: Membership) -> dict:
    """One row of every model in `plan`."""
    stages = {stage.name: stage for stage in plan.stages.all()}
    mapping = EventMapping.objects.create(plan=plan, event_type="visit", stage=stages["Explore"])
    choice = StrategicChoice.objects.create(
        plan=plan, title="Launch a loyalty subscription", owner=membership
    )
    choice.stages.set([stages["Buy"], stages["Engage"]])
    assumption = Assumption.objects.create(
        choice=choice,
        statement="At least 30% of first-time buyers buy again within 90 days",
        owner=membership,
        metric="repeat_rate",
        params={"event_type": "purchase", "within_days": 90},
        comparator=">=",
        threshold=0.3,
        status=AssumptionStatus.HOLDS,
        observed=0.41,
        sample_size=812,
        ci_low=0.38,
        ci_high=0.44,
    )
    initiative = BTInitiative.objects.create(plan=plan, title="Subscription billing")
    initiative.stages.set([stages["Buy"]])
    initiative.choices.set([choice])
    comment = Comment.objects.create(
        plan=plan, choice=choice, author=membership.user, body="Ask finance first."
    )
    activity = record_activity(
        plan, membership.user, "created", "choice", item_id=choice.pk, item_label=choice.title
    )
    upload = Import.objects.create(
        plan=plan,
        uploaded_by=membership.user,
        file=ContentFile(b"customer_id,occurred_at,event_type\nc1,2026-03-01,visit\n", "ev.csv"),
        original_name="events march.csv",
        status=Import.Status.SUCCEEDED,
        rows_read=1,
        rows_imported=1,
    )
    make_events(plan, 3, upload=upload)
    retest = PlanRetest.objects.create(
        plan=plan, trigger="scheduled", scheduled_for=START, status=PlanRetest.Status.DONE
    )
    delivery = DigestDelivery.objects.create(retest=retest, membership=membership, attempts=1)
    run = AssumptionRun.objects.create(
        assumption=assumption,
        plan=plan,
        retest=retest,
        requested_by=membership.user,
        status=AssumptionStatus.HOLDS,
        previous_status=AssumptionStatus.UNTESTED,
        changed=True,
        observed=0.41,
        n=812,
        ci_low=0.38,
        ci_high=0.44,
        test=assumption.test_definition(),
    )
    history = AssumptionHistory.objects.create(
        assumption=assumption,
        plan=plan,
        key="0" * 64,
        period="month",
        data_version=plan.data_version,
        test=assumption.test_definition(),
        status=AssumptionHistory.Status.READY,
        points=[
            {
                "as_of": "2026-03-31T23:59:59.999999+00:00",
                "observed": 0.41,
                "n": 812,
                "ci_low": 0.38,
                "ci_high": 0.44,
                "status": "holds",
            }
        ],
    )
    presence = Presence.objects.create(
        plan=plan, user=membership.user, connection=f"conn-{plan.pk}", last_seen=START
    )
    invitation = Invitation.objects.create(
        plan=plan,
        email=f"lena{plan.pk}@northwind.example",
        role=Role.CIO,
        invited_by=membership.user,
        token="not-a-real-token",
        sent_at=START,
        expires_at=START + dt.timedelta(days=14),
    )
    job = PendingJob.objects.create(task="planning.tasks.send_mention", args=[1, plan.pk])
    source = PlanDataSource.objects.create(
        plan=plan,
        engine="spark",
        url="sc://spark.northwind.example:15002",
        table="sales.events",
        token_env="NORTHWIND_SPARK_TOKEN",
    )
    return {
        **fill_session(plan, membership, choice, assumption),
        PendingJob: job,
        Invitation: invitation,
        Presence: presence,
        Stage: stages["Buy"],
        EventMapping: mapping,
        Plan: plan,
        Membership: membership,
        StrategicChoice: choice,
        Assumption: assumption,
        BTInitiative: initiative,
        Comment: comment,
        Activity: activity,
        Import: upload,
        Event: Event.objects.filter(plan=plan).first(),
        AssumptionRun: run,
        AssumptionHistory: history,
        PlanRetest: retest,
        DigestDelivery: delivery,
        PlanDataSource: source,
    }


def fill_session(
    plan: Plan, membership: Membership, choice: StrategicChoice, assumption: Assumption
) -> dict:
    """A running workshop with one row of each thing its room writes."""
    user = membership.user
    session = create_session(
        plan, user, title="Spring planning workshop", date=START.date(), template="workshop"
    )
    session = start_session(session)
    steps = {step.kind: step for step in session.steps.order_by("-position")}  # first of a kind
    note = SessionNote.objects.create(
        step=steps[StepKind.BRAINSTORM], author=user, text="Offer a family plan"
    )
    vote = SessionVote.objects.create(
        step=steps[StepKind.VOTE], voter=user, item_type=ItemKind.CHOICE, item_id=choice.pk, count=2
    )
    placement = MapPlacement.objects.create(
        step=steps[StepKind.MAP], assumption=assumption, importance=4, evidence=2, moved_by=user
    )
    decision = Decision.objects.create(
        session=session,
        step=steps[StepKind.DECIDE],
        item_type=ItemKind.CHOICE,
        item_id=choice.pk,
        item_label=choice.title,
        outcome=Decision.Outcome.ADOPTED,
        decided_by=user,
    )
    return {
        WorkshopSession: session,
        SessionStep: steps[StepKind.BRAINSTORM],
        SessionNote: note,
        SessionVote: vote,
        MapPlacement: placement,
        Decision: decision,
    }


def another_plan(number: int) -> None:
    plan = create_plan(f"Plan {number}", f"plan-{number}")
    user = get_user_model().objects.create_user(username=f"member{number}")
    fill_plan(plan, Membership.objects.create(plan=plan, user=user, role=Role.CMO))


@pytest.fixture
def world(plan, cmo) -> dict:
    return fill_plan(plan, cmo.membership)


def queries_for(client: Client, address: str) -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(address)
    assert response.status_code == 200
    return [query["sql"] for query in captured.captured_queries]


def management_data(response) -> dict[str, str]:
    """The management forms of every inline on an admin page, with no rows."""
    data = {}
    for inline in response.context["inline_admin_formsets"]:
        prefix = inline.formset.prefix
        data |= {
            f"{prefix}-TOTAL_FORMS": "0",
            f"{prefix}-INITIAL_FORMS": "0",
            f"{prefix}-MIN_NUM_FORMS": "0",
            f"{prefix}-MAX_NUM_FORMS": "1000",
        }
    return data


PLAN_FORM = {
    "name": "FY2028 retention plan",
    "slug": "fy2028",
    "description": "",
    "retest_cadence": "weekly",
    "retest_weekday": "0",
    "retest_time": "07:00",
    "retest_timezone": "Europe/Paris",
}


# --- Every model, for staff -------------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_staff_sees_the_changelist(staff, world, model):
    response = staff.client.get(url(model))
    assert response.status_code == 200
    assert response.context["cl"].result_count >= 1


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_staff_opens_the_add_page_where_adding_is_allowed(staff, world, model):
    response = staff.client.get(url(model, "add"))
    assert response.status_code == (403 if model in NO_ADD else 200)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_staff_opens_an_existing_object(staff, world, model):
    response = staff.client.get(url(model, "change", world[model].pk))
    assert response.status_code == 200
    assert str(world[model]) in response.text


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
@pytest.mark.parametrize("who", ["cmo", "outsider", "anonymous"])
def test_members_and_strangers_are_sent_to_the_admin_login(world, cmo, outsider, model, who):
    client = {"cmo": cmo.client, "outsider": outsider.client, "anonymous": Client()}[who]
    for address in [url(model), url(model, "add"), url(model, "change", world[model].pk)]:
        response = client.get(address)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))


@pytest.mark.parametrize("model", sorted(HISTORY, key=str), ids=lambda m: m.__name__)
def test_history_is_read_only(staff, world, model):
    row = world[model]
    assert staff.client.get(url(model, "add")).status_code == 403
    assert staff.client.get(url(model, "delete", row.pk)).status_code == 403
    assert staff.client.post(url(model, "delete", row.pk), {"post": "yes"}).status_code == 403
    assert staff.client.post(url(model, "change", row.pk), {}).status_code == 403
    page = staff.client.get(url(model, "change", row.pk))
    assert 'name="_save"' not in page.text
    assert "delete_selected" not in staff.client.get(url(model)).text
    assert model.objects.filter(pk=row.pk).exists()


# --- Plans ------------------------------------------------------------------------------------


def test_a_plan_added_in_the_admin_gets_the_six_default_stages(staff, db):
    page = staff.client.get(url(Plan, "add"))
    response = staff.client.post(url(Plan, "add"), PLAN_FORM | management_data(page))
    assert response.status_code == 302
    plan = Plan.objects.get(slug="fy2028")
    assert list(plan.stages.order_by("position").values_list("name", "position")) == [
        (name, position) for position, name in enumerate(DEFAULT_STAGES)
    ]
    assert plan.retest_cadence == "weekly"
    assert plan.next_retest_at is not None


def test_a_plan_added_with_its_own_stages_keeps_them(staff, db):
    page = staff.client.get(url(Plan, "add"))
    data = PLAN_FORM | management_data(page)
    data |= {
        "stages-TOTAL_FORMS": "2",
        "stages-0-name": "Find",
        "stages-0-position": "0",
        "stages-1-name": "Keep",
        "stages-1-position": "1",
    }
    assert staff.client.post(url(Plan, "add"), data).status_code == 302
    plan = Plan.objects.get(slug="fy2028")
    assert list(plan.stages.values_list("name", flat=True)) == ["Find", "Keep"]


def test_two_stages_with_the_same_name_are_refused_not_crashed_on(staff, db):
    page = staff.client.get(url(Plan, "add"))
    data = PLAN_FORM | management_data(page)
    data |= {
        "stages-TOTAL_FORMS": "2",
        "stages-0-name": "Buy",
        "stages-0-position": "0",
        "stages-1-name": "buy",
        "stages-1-position": "1",
    }
    response = staff.client.post(url(Plan, "add"), data)
    assert response.status_code == 200
    assert "Two stages are called" in response.text
    assert not Plan.objects.filter(slug="fy2028").exists()


def test_plan_list_shows_member_counts(staff, world, observer):
    response = staff.client.get(url(Plan))
    plan = response.context["cl"].result_list.get(slug="fy2027")
    assert plan.member_count == 2


def test_the_stage_inline_is_in_position_order(staff, plan):
    Stage.objects.filter(plan=plan, name="Discover").update(position=99)
    response = staff.client.get(url(Plan, "change", plan.pk))
    formset = next(
        inline.formset
        for inline in response.context["inline_admin_formsets"]
        if inline.formset.model is Stage
    )
    assert [form.instance.name for form in formset.forms] == [*DEFAULT_STAGES[1:], "Discover"]


def test_deleting_a_plan_takes_its_history_and_events_along(staff, world):
    plan = world[Plan]
    page = staff.client.get(url(Plan, "delete", plan.pk))
    assert page.status_code == 200
    assert not page.context["perms_lacking"]
    assert dict(page.context["model_count"])["events"] == 3
    response = staff.client.post(url(Plan, "delete", plan.pk), {"post": "yes"})
    assert response.status_code == 302
    assert not Plan.objects.filter(pk=plan.pk).exists()
    assert not Event.objects.exists()
    assert not Activity.objects.exists()
    assert not AssumptionRun.objects.exists()


def test_deleting_a_choice_takes_its_assumptions_runs_along(staff, world):
    choice = world[StrategicChoice]
    page = staff.client.get(url(StrategicChoice, "delete", choice.pk))
    assert not page.context["perms_lacking"]
    staff.client.post(url(StrategicChoice, "delete", choice.pk), {"post": "yes"})
    assert not StrategicChoice.objects.filter(pk=choice.pk).exists()
    assert not AssumptionRun.objects.exists()


def test_a_choice_offers_only_its_own_plans_stages(staff, world):
    create_plan("Other plan", "other")
    choice = world[StrategicChoice]
    page = staff.client.get(url(StrategicChoice, "change", choice.pk))
    stages = page.context["adminform"].form.fields["stages"].queryset
    assert set(stages) == set(choice.plan.stages.all())


def test_an_initiative_added_with_another_plans_stage_is_refused(staff, world):
    other = create_plan("Other plan", "other")
    data = {
        "plan": world[Plan].pk,
        "title": "Data lake",
        "stages": [other.stages.get(name="Buy").pk],
        "choices": [world[StrategicChoice].pk],
        "status": "proposed",
        "position": "0",
        "cost_estimate": "",
    }
    response = staff.client.post(url(BTInitiative, "add"), data)
    assert response.status_code == 200
    assert "Not in the plan “FY2027 growth plan”: Buy." in response.text
    assert not BTInitiative.objects.filter(title="Data lake").exists()
    data["stages"] = [world[Plan].stages.get(name="Buy").pk]
    assert staff.client.post(url(BTInitiative, "add"), data).status_code == 302
    assert BTInitiative.objects.get(title="Data lake").choices.get() == world[StrategicChoice]


def test_an_event_map_line_needs_a_stage_of_its_own_plan(staff, world):
    other = create_plan("Other plan", "other")
    data = {"plan": world[Plan].pk, "event_type": "Chat", "stage": other.stages.first().pk}
    response = staff.client.post(url(EventMapping, "add"), data)
    assert "is a stage of another plan" in response.text
    data["stage"] = world[Plan].stages.get(name="Ask").pk
    assert staff.client.post(url(EventMapping, "add"), data).status_code == 302
    assert EventMapping.objects.get(plan=world[Plan], event_type="chat").stage.name == "Ask"


def test_staff_fixes_an_event_without_changing_its_identity(staff, world):
    event = world[Event]
    data = {
        "plan": event.plan_id,
        "source_import": event.source_import_id,
        "customer_id": event.customer_id,
        "occurred_at_0": "2026-03-01",
        "occurred_at_1": "12:00:00",
        "event_type": "Purchase",
        "value": "25.00",
        "segment": "",
        "channel": "store",
        "event_id": event.event_id,
        "attributes": "{}",
    }
    response = staff.client.post(url(Event, "change", event.pk), data)
    assert response.status_code == 302
    fixed = Event.objects.get(pk=event.pk)
    assert (fixed.event_type, fixed.value, fixed.channel) == ("purchase", Decimal(25), "store")
    assert fixed.dedupe_key == event.dedupe_key


def test_activity_is_searchable_by_actor_and_filtered_by_action(staff, world):
    plan = world[Plan]
    record_activity(plan, None, "deleted", "assumption", item_label="Old hunch")
    by_actor = staff.client.get(url(Activity), {"q": "ana"}).context["cl"].result_list
    assert [activity.item_label for activity in by_actor] == ["Launch a loyalty subscription"]
    deleted = staff.client.get(url(Activity), {"action__exact": "deleted"}).context["cl"]
    assert [activity.item_label for activity in deleted.result_list] == ["Old hunch"]
    newest_first = staff.client.get(url(Activity)).context["cl"].result_list
    assert [activity.action for activity in newest_first] == ["deleted", "created"]


# --- Workshop sessions ------------------------------------------------------------------------

SESSION_MODELS = [WorkshopSession, SessionStep, *SESSION_ROWS]


def test_a_session_page_shows_its_agenda_and_links_to_what_its_room_wrote(staff, world):
    another_plan(0)  # another session, with rows of its own
    session = world[WorkshopSession]
    page = staff.client.get(url(WorkshopSession, "change", session.pk))
    formset = next(
        inline.formset
        for inline in page.context["inline_admin_formsets"]
        if inline.formset.model is SessionStep
    )
    assert [form.instance for form in formset.forms] == list(session.steps.order_by("position"))
    for model in SESSION_ROWS:
        link = re.search(rf'href="({url(model)}\?[^"]+)">1 ', page.text)
        assert link, model.__name__
        rows = staff.client.get(link[1].replace("&amp;", "&")).context["cl"].result_list
        assert list(rows) == [world[model]]


def test_a_session_page_does_not_grow_with_its_agenda(staff, world):
    session = world[WorkshopSession]
    address = url(WorkshopSession, "change", session.pk)
    staff.client.get(address)
    before = len(queries_for(staff.client, address))
    for stage in world[Plan].stages.all():
        SessionStep.objects.create(
            session=session, position=50, kind=StepKind.BRAINSTORM, title="More", stage=stage
        )
    assert len(queries_for(staff.client, address)) == before


@pytest.mark.parametrize("model", SESSION_MODELS, ids=lambda m: m.__name__)
def test_sessions_and_what_their_room_wrote_are_read_only(staff, world, model):
    row = world[model]
    assert staff.client.post(url(model, "change", row.pk), {}).status_code == 403
    assert 'name="_save"' not in staff.client.get(url(model, "change", row.pk)).text
    assert model.objects.filter(pk=row.pk).exists()


@pytest.mark.parametrize("model", SESSION_MODELS, ids=lambda m: m.__name__)
def test_sessions_and_what_their_room_wrote_are_found_by_plan(staff, world, model):
    another_plan(0)
    path = {WorkshopSession: "plan", SessionStep: "session__plan", Decision: "session__plan"}
    ours = set(model.objects.filter(**{path.get(model, "step__session__plan"): world[Plan]}))
    assert world[model] in ours
    assert model.objects.count() == 2 * len(ours)
    for q in ["FY2027", "fy2027"]:
        found = staff.client.get(url(model), {"q": q}).context["cl"].result_list
        assert set(found) == ours


def test_deleting_a_session_takes_its_steps_and_what_its_room_wrote_along(staff, world):
    session = world[WorkshopSession]
    page = staff.client.get(url(WorkshopSession, "delete", session.pk))
    assert page.status_code == 200
    assert not page.context["perms_lacking"]
    counts = dict(page.context["model_count"])
    assert counts["session steps"] == session.steps.count()
    response = staff.client.post(url(WorkshopSession, "delete", session.pk), {"post": "yes"})
    assert response.status_code == 302
    for model in SESSION_MODELS:
        assert not model.objects.exists(), model.__name__
    assert Plan.objects.filter(pk=world[Plan].pk).exists()
    assert Assumption.objects.filter(pk=world[Assumption].pk).exists()


def test_a_vote_shows_the_item_it_is_on_even_once_deleted(staff, world):
    vote = world[SessionVote]
    assert "Launch a loyalty subscription" in staff.client.get(url(SessionVote)).text
    world[StrategicChoice].delete()
    assert f"#{vote.item_id}, since deleted" in staff.client.get(url(SessionVote)).text


# --- Queries: changelists do not grow with the data --------------------------------------------


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_changelist_queries_do_not_grow_with_rows(staff, world, model):
    staff.client.get(url(model))  # warm caches (content types, site)
    before = len(queries_for(staff.client, url(model)))
    for number in range(3):
        another_plan(number)
    assert len(queries_for(staff.client, url(model))) == before


def test_event_changelist_stays_bounded_with_thousands_of_events(staff, plan):
    make_events(plan, 20)
    staff.client.get(url(Event))
    few = queries_for(staff.client, url(Event))
    make_events(plan, 3000, start=20)
    many = queries_for(staff.client, url(Event))
    assert len(many) == len(few) <= 8
    assert not [sql for sql in many if PLAIN_EVENT_COUNT.match(sql)]
    other = create_plan("Other plan", "other")
    make_events(other, 10, start=5000)
    filtered = queries_for(staff.client, url(Event) + f"?plan__id__exact={other.pk}")
    assert len(filtered) <= len(many)
    assert not [sql for sql in filtered if PLAIN_EVENT_COUNT.match(sql)]


@pytest.mark.skipif(not ON_POSTGRESQL, reason="the planner's estimate is PostgreSQL's")
def test_unfiltered_event_count_is_the_planners_estimate(staff, plan, monkeypatch):
    make_events(plan, 3000)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE insights_event")
    monkeypatch.setattr(EstimatedCountPaginator, "cap", 1000)
    queries = queries_for(staff.client, url(Event))
    assert not [sql for sql in queries if "COUNT(" in sql.upper() and "insights_event" in sql]
    assert any("reltuples" in sql for sql in queries)


def test_a_count_past_the_cap_stops_at_the_cap(plan, monkeypatch):
    make_events(plan, 150)
    monkeypatch.setattr(EstimatedCountPaginator, "cap", 100)
    filtered = Event.objects.filter(plan=plan).order_by("-id")
    assert EstimatedCountPaginator(filtered, 25).count == 100
    assert EstimatedCountPaginator(filtered.filter(customer_id="c7"), 25).count == 1


def test_event_search_matches_customer_and_event_ids_exactly(staff, plan):
    make_events(plan, 40)
    by_customer = staff.client.get(url(Event), {"q": "c7"}).context["cl"].result_list
    assert {event.customer_id for event in by_customer} == {"c7"}
    by_event_id = staff.client.get(url(Event), {"q": "e12"}).context["cl"].result_list
    assert [event.event_id for event in by_event_id] == ["e12"]
    assert not staff.client.get(url(Event), {"q": "C7"}).context["cl"].result_list


def test_event_list_only_sorts_by_id(staff, world):
    response = staff.client.get(url(Event), {"o": "2"})  # occurred_at: no index of its own
    assert response.status_code == 200
    assert response.context["cl"].queryset.query.order_by == ("-id",)


# --- Imports ----------------------------------------------------------------------------------


def another_import(plan: Plan, rows: bytes, status: str, message: str = "") -> Import:
    return Import.objects.create(
        plan=plan,
        file=ContentFile(b"customer_id,occurred_at,event_type\n" + rows, "more.csv"),
        original_name="more.csv",
        status=status,
        message=message,
    )


def download_url(upload: Import, which: str = "file") -> str:
    return reverse("admin:insights_import_download", args=[upload.pk, which])


def test_staff_downloads_the_kept_file(staff, world):
    upload = world[Import]
    assert download_url(upload) in staff.client.get(url(Import)).text
    response = staff.client.get(download_url(upload))
    assert response.status_code == 200
    assert b"".join(response.streaming_content).startswith(b"customer_id,occurred_at")
    assert "events march.csv" in response["Content-Disposition"]


def test_staff_downloads_the_rejected_rows(staff, world):
    upload = world[Import]
    assert staff.client.get(download_url(upload, "rejected_file")).status_code == 404
    upload.rejected_file.save("rejected.csv", ContentFile(b"line,error\n3,bad date\n"))
    page = staff.client.get(url(Import, "change", upload.pk))
    assert download_url(upload, "rejected_file") in page.text
    response = staff.client.get(download_url(upload, "rejected_file"))
    assert b"".join(response.streaming_content) == b"line,error\n3,bad date\n"
    assert "events march-rejected-rows.csv" in response["Content-Disposition"]
    assert staff.client.get(download_url(upload, "plan")).status_code == 404


def test_members_cannot_download_a_kept_file(world, cmo):
    for client in [cmo.client, Client()]:
        response = client.get(download_url(world[Import]))
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))


def test_import_counters_and_outcome_are_read_only(staff, world):
    upload = world[Import]
    form = staff.client.get(url(Import, "change", upload.pk)).context["adminform"].form
    assert set(form.fields) == {"mode", "mapping"}


def test_staff_retries_failed_imports(
    staff, world, tasks_inline, django_capture_on_commit_callbacks
):
    plan = world[Plan]
    failed = another_import(plan, b"new-1,2026-03-01,visit\n", Import.Status.FAILED, "Stopped.")
    done = another_import(plan, b"new-2,2026-03-02,visit\n", Import.Status.SUCCEEDED)
    with django_capture_on_commit_callbacks(execute=True) as enqueued:
        response = staff.client.post(
            url(Import), {"action": "retry", "_selected_action": [failed.pk, done.pk]}
        )
    assert response.status_code == 302
    # One import sent (the failed one), then the plan's histories and lifetime value once it
    # succeeded.
    assert [job.args[0] for job in enqueued] == [
        "insights.tasks.import_events",
        "insights.tasks.compute_plan_history",
        "insights.tasks.compute_customer_value",
    ]
    failed.refresh_from_db()
    assert (failed.status, failed.rows_imported) == (Import.Status.SUCCEEDED, 1)
    assert Event.objects.filter(source_import=failed, customer_id="new-1").count() == 1
    assert not Event.objects.filter(customer_id="new-2").exists()


# --- Assumptions ------------------------------------------------------------------------------


def test_assumption_list_shows_status_and_observed_badges(staff, world):
    response = staff.client.get(url(Assumption), {"status__exact": "holds"})
    assert response.context["cl"].result_count == 1
    assert "icon-yes.svg" in response.text
    assert "41.0% [38.0% – 44.0%], n = 812" in response.text
    plan = world[Plan]
    by_plan = staff.client.get(url(Assumption), {"choice__plan__id__exact": plan.pk})
    assert by_plan.context["cl"].result_count == 1


def test_deleting_a_member_takes_their_digest_deliveries_along(staff, world):
    member = world[Membership]
    page = staff.client.get(url(Membership, "delete", member.pk))
    assert not page.context["perms_lacking"]
    staff.client.post(url(Membership, "delete", member.pk), {"post": "yes"})
    assert not DigestDelivery.objects.exists()
    assert StrategicChoice.objects.get().owner is None


def test_every_model_of_ours_is_in_the_admin_and_in_these_tests():
    ours = {model for model in apps.get_models() if model._meta.app_label in APPS}
    assert not [model.__name__ for model in ours if not admin.site.is_registered(model)]
    assert ours == set(MODELS)


def test_deleting_an_import_in_the_admin_undoes_it_first(staff, world):
    """Its events go with it, the plan's data version moves and the activity says so, as
    "Undo this import" does: a plain delete would leave the events counted in the plan."""
    upload = world[Import]
    plan = upload.plan
    version = Plan.objects.get(pk=plan.pk).data_version
    assert Event.objects.filter(source_import=upload).count() == 3
    response = staff.client.post(url(Import, "delete", upload.pk), {"post": "yes"})
    assert response.status_code == 302
    assert not Import.objects.filter(pk=upload.pk).exists()
    assert not Event.objects.filter(source_import_id=upload.pk).exists()
    assert Plan.objects.get(pk=plan.pk).data_version == version + 1
    undone = Activity.objects.filter(plan=plan, item_type="import", item_id=upload.pk).get()
    assert (undone.action, undone.actor) == ("reverted", staff.user)


def test_deleting_imports_in_bulk_undoes_each(staff, world):
    upload = world[Import]
    failed = another_import(upload.plan, b"x,2026-03-01,visit\n", Import.Status.FAILED, "Bad.")
    response = staff.client.post(
        url(Import),
        {"action": "delete_selected", "_selected_action": [upload.pk, failed.pk], "post": "yes"},
    )
    assert response.status_code == 302
    assert not Import.objects.filter(pk__in=[upload.pk, failed.pk]).exists()
    assert not Event.objects.filter(source_import_id=upload.pk).exists()
    assert Activity.objects.filter(
        item_type="import", item_id=upload.pk, action="reverted"
    ).exists()
