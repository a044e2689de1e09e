"""The digest e-mail after a scheduled re-test: what changed, for each member who wants it."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from django.conf import settings
from django.core import signing
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.db.models import F, Q
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from planning.mail import subject_line
from planning.models import Membership, StrategicChoice

from ..models import AsOfMove, AssumptionRun, DigestDelivery, Import, PlanRetest
from .health import ALARMING, BlastRadius, blast_radii

UNSUBSCRIBE_SALT = "outside-in.digest-unsubscribe"
QUIET_EVERY = dt.timedelta(days=7)
# What a digest reports (DOMAIN §5, §10): a change of status, or a change of drift.
REPORTED = Q(changed=True) | Q(drift_changed=True)


def unsubscribe_token(membership: Membership) -> str:
    """A signed, lasting link token: one member, no date (an old e-mail's link still works)."""
    return signing.Signer(salt=UNSUBSCRIBE_SALT).sign_object({"m": membership.pk}, compress=True)


def membership_from_token(token: str) -> Membership | None:
    try:
        data = signing.Signer(salt=UNSUBSCRIBE_SALT).unsign_object(token)
    except signing.BadSignature:
        return None
    if not isinstance(data, dict):
        return None
    member = data.get("m")
    if not isinstance(member, int):
        return None
    return Membership.objects.select_related("plan", "user").filter(pk=member).first()


def queue_digests(retest_id: int) -> list[DigestDelivery]:
    """Decide who gets a digest for this scheduled re-test; the caller sends each one (on commit).
    Claimed once per re-test, so a re-test that is run twice does not e-mail twice."""
    with transaction.atomic():
        claimed = PlanRetest.objects.filter(
            pk=retest_id,
            status=PlanRetest.Status.DONE,
            trigger=AssumptionRun.Trigger.SCHEDULED,
            digests_queued_at__isnull=True,
        ).update(digests_queued_at=timezone.now())
        if not claimed:
            return []
        retest = PlanRetest.objects.select_related("plan").get(pk=retest_id)
        # Weekly quiet e-mails are counted from slot to slot: counted from the moment of sending,
        # a daily schedule would drift to one every 8 days.
        moment = retest.scheduled_for or retest.created_at
        changed = retest.runs.filter(REPORTED).exists()
        deliveries = []
        members = retest.plan.memberships.select_related("user").filter(digest_opt_out=False)
        for member in members:
            if not member.user.email:
                continue
            if changed:
                kind = "changes"
            elif member.all_quiet_digest and (
                member.last_quiet_digest_at is None
                or member.last_quiet_digest_at <= moment - QUIET_EVERY
            ):
                kind = "quiet"
                # Taken now, not when sent: a second re-test before the first e-mail goes out
                # (the mail server is down) must not queue a second quiet e-mail.
                Membership.objects.filter(pk=member.pk).update(last_quiet_digest_at=moment)
            else:
                continue
            delivery, _ = DigestDelivery.objects.get_or_create(
                retest=retest, membership=member, defaults={"kind": kind}
            )
            deliveries.append(delivery)
    return deliveries


@dataclass
class ReportedRun:
    """One assumption in the digest: its run, and its blast radius when the run found it broken,
    at risk or drifting."""

    run: AssumptionRun
    radius: BlastRadius | None = None


@dataclass
class ChoiceChanges:
    choice: StrategicChoice
    stages: list[str]
    runs: list[ReportedRun] = field(default_factory=list)


def changes_by_choice(retest: PlanRetest) -> list[ChoiceChanges]:
    runs = list(
        retest.runs.filter(REPORTED)
        .select_related("assumption__choice__plan")
        .prefetch_related("assumption__choice__stages")
        .order_by("assumption__choice__position", "assumption__choice_id", "assumption__position")
    )
    alarming = [run.assumption for run in runs if run.status in ALARMING or run.drift]
    radii = blast_radii(alarming)
    groups: dict[int, ChoiceChanges] = {}
    for run in runs:
        choice = run.assumption.choice
        if choice.pk not in groups:
            groups[choice.pk] = ChoiceChanges(choice, [s.name for s in choice.stages.all()])
        groups[choice.pk].runs.append(ReportedRun(run, radii.get(run.assumption_id)))
    return list(groups.values())


@dataclass
class DataMove:
    """The end of the plan's data (every windowed metric's as_of) moved by more than a day since
    the previous re-test, and the imports that moved it (imported, or undone, in between)."""

    move: AsOfMove
    imports: list[Import]

    @property
    def sentence(self) -> str:
        move = self.move
        year = move.before.year != move.after.year
        before, after = (_day(m, year) for m in (move.before, move.after))
        names = ", ".join(record.original_name for record in self.imports)
        if self.move.forward:
            said = (
                f"The plan's latest data moved from {before} to {after} since the previous "
                f"re-test: every windowed metric now ends on {after}."
            )
            return said + (f" Imported since: {names}." if names else "")
        said = (
            f"The plan's latest data moved back from {before} to {after} since the previous "
            f"re-test: every windowed metric now ends on {after}."
        )
        return said + (f" Undone since: {names}." if names else "")


def _day(moment: dt.datetime, year: bool) -> str:
    day = moment.astimezone(dt.UTC)
    return f"{day.day} {day:%b %Y}" if year else f"{day.day} {day:%b}"


def data_moved(retest: PlanRetest) -> DataMove | None:
    """How the re-test's as_of differs from the one of the plan's run before it (a re-test of
    the plan, of one assumption, or from the command line), when by more than a day. A
    scheduled re-test is compared with the previous scheduled one, when there is one: its
    digest's readers saw that one, not the manual re-tests between them."""
    runs = AssumptionRun.objects.filter(plan_id=retest.plan_id).exclude(as_of=None)
    as_of = runs.filter(retest=retest).values_list("as_of", flat=True).first()
    if as_of is None:
        return None
    earlier = runs.filter(created_at__lt=retest.created_at).order_by("-created_at", "-id")
    previous = None
    if retest.trigger == AssumptionRun.Trigger.SCHEDULED:
        scheduled = earlier.filter(retest__trigger=AssumptionRun.Trigger.SCHEDULED)
        previous = scheduled.values_list("as_of", "created_at").first()
    previous = previous or earlier.values_list("as_of", "created_at").first()
    if previous is None:
        return None
    before, since = previous
    move = AsOfMove.between(before, as_of)
    if move is None:
        return None
    imports = Import.objects.filter(plan_id=retest.plan_id)
    between = (since, retest.created_at)
    if move.forward:
        imports = imports.filter(status=Import.Status.SUCCEEDED, finished_at__range=between)
    else:
        imports = imports.filter(undone_at__range=between)
    return DataMove(move, list(imports.order_by("created_at", "id")[:10]))


def build_digest(delivery: DigestDelivery) -> EmailMultiAlternatives:
    member = delivery.membership
    retest = delivery.retest
    plan = retest.plan
    site = settings.SITE_URL
    unsubscribe = site + reverse("unsubscribe", args=[unsubscribe_token(member)])
    groups = changes_by_choice(retest) if delivery.kind == "changes" else []
    runs = [reported.run for group in groups for reported in group.runs]
    count = len(runs)
    context = {
        "member": member,
        "plan": plan,
        "groups": groups,
        "count": count,
        "status_count": sum(run.changed for run in runs),
        "drift_count": sum(run.drift_changed for run in runs),
        "site": site,
        "plan_url": site + reverse("planning:board", args=[plan.slug]),
        "unsubscribe_url": unsubscribe,
        "retest": retest,
        "data_move": data_moved(retest),
    }
    if delivery.kind == "changes":
        subject = f"{plan.name}: {count} assumption{'s' if count != 1 else ''} changed"
    else:
        subject = f"{plan.name}: all quiet, no assumption changed"
    text = render_to_string("insights/email/digest.txt", context)
    html = render_to_string("insights/email/digest.html", context)
    message = EmailMultiAlternatives(
        subject=subject_line(subject),
        body=text,
        to=[member.user.email],
        headers={
            "List-Unsubscribe": f"<{unsubscribe}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
    )
    message.attach_alternative(html, "text/html")
    return message


def send_digest(delivery_id: int) -> bool:
    """Send one digest. `sent_at` is written only after the server accepted it, so a retry
    after a failure sends it, and a retry after a success does not send it again. The row is
    locked while sending: a task delivered twice at once sends one e-mail."""
    failure: Exception | None = None
    with transaction.atomic():
        delivery = (
            DigestDelivery.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("membership__user", "membership__plan", "retest__plan")
            .filter(pk=delivery_id, sent_at__isnull=True)
            .first()
        )
        if delivery is None or delivery.membership.digest_opt_out:
            return False
        try:
            build_digest(delivery).send()
        except Exception as error:  # recorded for the back-office, then raised for the retry
            failure = error
            DigestDelivery.objects.filter(pk=delivery.pk).update(
                attempts=F("attempts") + 1, last_error=f"{type(error).__name__}: {error}"[:2000]
            )
        else:
            DigestDelivery.objects.filter(pk=delivery.pk).update(
                sent_at=timezone.now(), attempts=F("attempts") + 1, last_error=""
            )
    if failure is not None:
        raise failure
    return True
