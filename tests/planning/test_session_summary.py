"""The session summary (DOMAIN §11) as a page, a PDF and an e-mail: a session run through its
pages (an item written and revealed, a vote, decisions), then ended by the facilitator; the
e-mail goes over real SMTP (aiosmtpd) to every member with an address, once, with the PDF,
and the PDF's own text (read back with pypdf) lists what the session decided."""

from __future__ import annotations

import datetime as dt
import io
from html import unescape

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils.html import strip_tags
from pypdf import PdfReader

from planning.models import (
    Assumption,
    AssumptionStatus,
    Membership,
    Role,
    StepKind,
    StrategicChoice,
    WorkshopSession,
)
from planning.sessions.agenda import create_session
from planning.sessions.mail import send_summary
from planning.sessions.tasks import send_session_summary

from ..conftest import free_port

pytestmark = pytest.mark.django_db

DECISIONS = ["Adopted: Rentals", "Rejected: App relaunch", "Owner named: Rentals (Maya Tester)"]


def act(persona, session, action, **data):
    url = reverse("planning:session_action", args=[session.plan.slug, session.pk, action])
    return persona.client.post(url, data, HTTP_HX_REQUEST="true")


def goto(facilitator, session, kind) -> None:
    step = session.steps.filter(kind=kind).order_by("position").first()
    assert act(facilitator, session, "goto", step=step.pk).status_code == 200


def pdf_text(content: bytes) -> str:
    reader = PdfReader(io.BytesIO(content))
    return "\n".join(page.extract_text() for page in reader.pages)


@pytest.fixture
def choices(plan):
    return [
        StrategicChoice.objects.create(plan=plan, title=title, position=i)
        for i, title in enumerate(["Loyalty plus", "Rentals", "App relaunch"])
    ]


@pytest.fixture
def no_address(plan) -> Membership:
    """A member the e-mail cannot reach."""
    user = get_user_model().objects.create_user(username="nomail", email="", first_name="Nomi")
    return Membership.objects.create(plan=plan, user=user, role=Role.CIO)


@pytest.fixture
def session(plan, facilitator, cmo, cio, observer, choices) -> WorkshopSession:
    """A session run up to its wrap-up: one new item, a revealed vote, three decisions."""
    Assumption.objects.create(
        choice=choices[0], statement="Members renew yearly", status=AssumptionStatus.AT_RISK
    )
    session = create_session(
        plan, facilitator.user, title="Q1 workshop", date=dt.date(2027, 1, 12), template="workshop"
    )
    assert act(facilitator, session, "start").status_code == 200
    goto(facilitator, session, StepKind.BRAINSTORM)
    assert act(cmo, session, "note-add", text="Same-day pickup").status_code == 200
    assert act(facilitator, session, "reveal").status_code == 200
    loyalty, rentals, app = choices
    goto(facilitator, session, StepKind.VOTE)
    for persona, item in [(cmo, loyalty), (cmo, loyalty), (cio, loyalty), (cio, rentals)]:
        assert act(persona, session, "vote", item=item.pk).status_code == 200
    assert act(facilitator, session, "reveal").status_code == 200
    goto(facilitator, session, StepKind.DECIDE)
    assert act(facilitator, session, "adopt", choice=rentals.pk).status_code == 200
    assert act(facilitator, session, "reject", choice=app.pk).status_code == 200
    owner = {"kind": "choice", "choice": rentals.pk, "owner": cio.membership.pk}
    assert act(facilitator, session, "owner", **owner).status_code == 200
    goto(facilitator, session, StepKind.WRAP_UP)
    session.refresh_from_db()
    return session


def end(facilitator, session, capture) -> None:
    """The facilitator ends the session; what was enqueued on commit runs (inline)."""
    with capture(execute=True):
        assert act(facilitator, session, "end").status_code == 200
    session.refresh_from_db()


def visible(html: str) -> str:
    """What a reader of an HTML page sees of it, as text."""
    return unescape(strip_tags(html))


def assert_lists_the_summary(text: str) -> None:
    for decision in DECISIONS:
        assert decision in text
    # The ranked votes, most first: Loyalty plus 3 (from two members), Rentals 1.
    assert text.index("Loyalty plus: 3 votes") < text.index("Rentals: 1 vote")
    assert "Same-day pickup" in text  # the new item
    assert "Members renew yearly" in text  # at risk


def test_ending_a_session_emails_the_summary_with_its_pdf_to_each_member_with_an_address(
    session,
    facilitator,
    cmo,
    cio,
    observer,
    no_address,
    settings,
    smtp_server,
    tasks_inline,
    django_capture_on_commit_callbacks,
):
    assert session.summary_sent_at is None
    end(facilitator, session, django_capture_on_commit_callbacks)

    assert session.status == "ended" and session.summary_sent_at is not None
    recipients = sorted(m.envelope_rcpt_tos[0] for m in smtp_server.messages)
    people = (facilitator, cmo, cio, observer)
    assert recipients == sorted(p.user.email for p in people)  # observers read it too
    assert all(len(m.envelope_rcpt_tos) == 1 for m in smtp_server.messages)  # one each
    message = next(m for m in smtp_server.messages if m["To"] == cmo.user.email)
    assert message["Subject"] == "Summary of “Q1 workshop” on “FY2027 growth plan”"
    text = message.get_body(preferencelist=("plain",)).get_content()
    html = message.get_body(preferencelist=("html",)).get_content()
    assert text.startswith("Hello Ana Tester,")
    assert_lists_the_summary(text)
    assert_lists_the_summary(visible(html))
    summary_url = settings.SITE_URL + reverse(
        "planning:session_summary", args=[session.plan.slug, session.pk]
    )
    assert summary_url in text and f'href="{summary_url}"' in html
    attachments = list(message.iter_attachments())
    assert [a.get_content_type() for a in attachments] == ["application/pdf"]
    assert attachments[0].get_filename() == "fy2027-q1-workshop-2027-01-12-summary.pdf"
    assert_lists_the_summary(pdf_text(attachments[0].get_content()))


def test_the_summary_goes_out_once(
    session, facilitator, smtp_server, tasks_inline, django_capture_on_commit_callbacks
):
    end(facilitator, session, django_capture_on_commit_callbacks)
    sent = len(smtp_server.messages)
    assert sent == 4
    first = session.summary_sent_at
    # A second end is refused (the session is not running) and sends nothing; the task run
    # again (a retry, a duplicate delivery) sends nothing either.
    with django_capture_on_commit_callbacks(execute=True):
        assert act(facilitator, session, "end").status_code == 409
    assert send_session_summary.delay(session.pk).get() == 0
    assert send_summary(session.pk) == 0
    session.refresh_from_db()
    assert len(smtp_server.messages) == sent and session.summary_sent_at == first


def test_a_mail_server_that_is_down_leaves_the_summary_for_the_retry(
    session, facilitator, settings, smtp_server
):
    assert act(facilitator, session, "end").status_code == 200  # the task is run by hand here
    working = settings.MAILERS
    settings.MAILERS = {
        "default": {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {"host": "127.0.0.1", "port": free_port(), "timeout": 2},
        }
    }
    with pytest.raises(OSError):
        send_summary(session.pk)
    session.refresh_from_db()
    assert session.summary_sent_at is None  # not claimed: the retry sends it
    settings.MAILERS = working
    assert send_summary(session.pk) == 4
    assert len(smtp_server.messages) == 4


def test_a_session_not_ended_sends_no_summary(session, smtp_server):
    assert send_summary(session.pk) == 0
    assert smtp_server.messages == []


def test_the_pdf_lists_decisions_votes_and_new_items(session, cmo):
    url = reverse("planning:session_pdf", args=[session.plan.slug, session.pk])
    assert url.endswith(f"/sessions/{session.pk}/summary.pdf")
    response = cmo.client.get(url)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"] == (
        'attachment; filename="fy2027-q1-workshop-2027-01-12-summary.pdf"'
    )
    assert response.content.startswith(b"%PDF-")
    text = pdf_text(response.content)
    assert "Summary of “Q1 workshop”" in text
    assert_lists_the_summary(text)
    assert cmo.client.post(url).status_code == 405


def test_the_summary_page_the_wrap_up_and_the_ended_room_offer_the_pdf(session, facilitator, cmo):
    args = [session.plan.slug, session.pk]
    button = f'href="{reverse("planning:session_pdf", args=args)}" download>Download PDF</a>'
    page = cmo.client.get(reverse("planning:session_summary", args=args)).content.decode()
    assert_lists_the_summary(visible(page))
    assert button in page
    room = reverse("planning:session", args=args)
    wrap_up = cmo.client.get(room).content.decode()  # the room is on its wrap-up step
    assert button in wrap_up and "Adopted: Rentals" in visible(wrap_up)
    assert act(facilitator, session, "end").status_code == 200
    ended = cmo.client.get(room).content.decode()
    assert "The session has ended" in ended
    assert button in ended and "Adopted: Rentals" in visible(ended)


def test_observers_read_the_summary_and_outsiders_do_not(session, observer, outsider):
    args = [session.plan.slug, session.pk]
    for name in ("planning:session_summary", "planning:session_pdf"):
        assert observer.client.get(reverse(name, args=args)).status_code == 200
        assert outsider.client.get(reverse(name, args=args)).status_code == 404
    text = pdf_text(observer.client.get(reverse("planning:session_pdf", args=args)).content)
    assert "Adopted: Rentals" in text
