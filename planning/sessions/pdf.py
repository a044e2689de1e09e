"""The session summary as a PDF: the summary's own body (the page's), laid out for print by
WeasyPrint. The PDF is made from our template alone: its stylesheet is inline and nothing is
fetched, so a name or link that someone typed into the plan cannot make the server reach out to
the network or read a local file."""

from __future__ import annotations

from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.text import slugify

from ..models.sessions import WorkshopSession
from .summary import Summary, owners, summarize


def summary_pdf(session: WorkshopSession, summary: Summary | None = None) -> bytes:
    """The summary of `session` as PDF bytes (`summary` when the caller has read it already)."""
    # Imported here: WeasyPrint loads Pango and takes about a second; only PDFs need it.
    from weasyprint import HTML
    from weasyprint.urls import URLFetcher

    class NothingFetched(URLFetcher):
        def fetch(self, url, headers=None):
            raise ValueError(f"the summary PDF fetches nothing ({url})")

    summary = summary or summarize(session)
    html = render_to_string(
        "planning/sessions/summary_pdf.html",
        {
            "plan": session.plan,
            "session": session,
            "summary": summary,
            "owners": owners(summary),
            "made_at": timezone.now(),
        },
    )
    return HTML(string=html, url_fetcher=NothingFetched()).write_pdf()


def pdf_filename(session: WorkshopSession) -> str:
    """e.g. `fy2027-q1-workshop-2027-01-12-summary.pdf`."""
    title = slugify(session.title)[:60] or "session"
    return f"{session.plan.slug}-{title}-{session.date.isoformat()}-summary.pdf"
