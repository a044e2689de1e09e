"""The members page (facilitators invite, change and remove people) and the invitation link's
pages, where the invited person accepts, declines or sets up an account."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import BadRequest
from django.db.models import Count
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from ..forms import AccountForm, InvitationForm, MembershipForm
from ..http import AuthenticatedHttpRequest, HtmxHttpRequest
from ..models import Invitation, Membership, Plan, Role, display_name
from ..services import (
    MemberError,
    change_member,
    remove_member,
)
from ..services.invitations import (
    InvitationGone,
    NewAccount,
    WrongAccount,
    accept_invitation,
    account_exists,
    decline_invitation,
    email_matches,
    invitation_from_link,
    invite,
    join_with_new_account,
    resend_invitation,
    revoke_invitation,
)
from .access import get_plan_for_user, require_facilitator

# --- the members page ----------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@login_required
def members(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    """Who is in the plan and who is invited; facilitators invite people by e-mail."""
    plan, membership = get_plan_for_user(request.user, slug)
    form = InvitationForm()
    notice = ""
    if request.method == "POST":
        require_facilitator(membership)
        form = InvitationForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            try:
                sent = invite(
                    plan, request.user, data["email"], data["role"], data["business_unit"]
                )
            except MemberError as error:
                form.add_error(None, str(error))
            else:
                # The same words whoever the address belongs to, or nobody.
                notice = f"Invitation sent to {sent.email}."
                if not request.htmx:
                    messages.success(request, notice)
                    return redirect("planning:members", slug=plan.slug)
                form = InvitationForm()
    return _members_page(request, plan, membership, form, notice)


def _members_page(
    request: HtmxHttpRequest,
    plan: Plan,
    membership: Membership,
    form: InvitationForm,
    notice: str = "",
) -> HttpResponse:
    rows = plan.memberships.select_related("user").order_by(
        "role", "user__last_name", "user__username"
    )
    context = {
        "plan": plan,
        "membership": membership,
        "members": rows,
        "invitations": plan.invitations.open().select_related("invited_by"),
        "now": timezone.now(),
        "form": form,
        "notice": notice,
        "roles": Role.choices,
    }
    if membership.can_manage and not request.htmx:
        context["removing"] = _removing(plan, request.GET.get("remove", ""))
    template = "planning/members.html" + ("#invitations" if request.htmx else "")
    status = (422 if request.htmx else 400) if form.errors else 200
    return render(request, template, context, status=status)


def _removing(plan: Plan, pk: str) -> Membership | None:
    """The member a facilitator asked to remove (`?remove=<pk>`), with what they own, to ask
    first: their items keep no owner once they are gone."""
    if not pk.isdigit():
        return None
    return (
        plan.memberships.select_related("user")
        .annotate(
            choices_owned=Count("owned_choices", distinct=True),
            assumptions_owned=Count("owned_assumptions", distinct=True),
        )
        .filter(pk=int(pk))
        .first()
    )


@require_POST
@login_required
def member_change(request: AuthenticatedHttpRequest, slug: str, pk: int) -> HttpResponse:
    plan, membership = get_plan_for_user(request.user, slug)
    require_facilitator(membership)
    target = get_object_or_404(plan.memberships.select_related("user", "plan"), pk=pk)
    form = MembershipForm(request.POST, instance=Membership.objects.get(pk=target.pk))
    if request.POST.get("remove") and not request.POST.get("confirm"):
        # Removing someone is asked first: the members page shows what it means.
        url = reverse("planning:members", args=[plan.slug])
        return redirect(f"{url}?remove={target.pk}#confirm-remove")
    try:
        if request.POST.get("remove"):
            remove_member(target, request.user)
            messages.success(request, f"Removed {target.display_name} from the plan.")
        elif form.is_valid():
            change_member(
                target, request.user, form.cleaned_data["role"], form.cleaned_data["business_unit"]
            )
            messages.success(request, f"Saved {target.display_name}.")
        else:
            messages.error(
                request, " ".join(str(e) for errors in form.errors.values() for e in errors)
            )
    except MemberError as error:
        messages.error(request, str(error))
    return redirect("planning:members", slug=plan.slug)


@require_POST
@login_required
def invitation_change(request: AuthenticatedHttpRequest, slug: str, pk: int) -> HttpResponse:
    """Resend (a new link, a new expiry date) or revoke an invitation."""
    plan, membership = get_plan_for_user(request.user, slug)
    require_facilitator(membership)
    invitation = get_object_or_404(plan.invitations.open(), pk=pk)
    action = request.POST.get("action")
    if action not in {"resend", "revoke"}:
        raise BadRequest("Choose Resend or Revoke.")
    try:
        if action == "revoke":
            revoke_invitation(invitation, request.user)
            notice = f"Withdrew the invitation of {invitation.email}."
        else:
            resend_invitation(invitation, request.user)
            notice = f"Invitation sent to {invitation.email} again, with a new link."
        level = messages.SUCCESS
    except MemberError as error:
        notice, level = str(error), messages.ERROR
    if request.htmx:
        return _members_page(request, plan, membership, InvitationForm(), notice)
    messages.add_message(request, level, notice)
    return redirect("planning:members", slug=plan.slug)


# --- the invitation link -------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
def invitation(request: HtmxHttpRequest, token: str) -> HttpResponse:
    """“Join FY2027 growth plan as CMO”: accept or decline. Joining is the person's own act,
    signed in with the account of the invited address."""
    try:
        found = invitation_from_link(token)
        if request.method == "POST":
            return _answer(request, found)
    except InvitationGone as gone:
        return _gone(request, gone)
    return _invitation_page(request, found, token)


def _answer(request: HtmxHttpRequest, found: Invitation) -> HttpResponse:
    answer = request.POST.get("answer")
    if answer not in {"accept", "decline"}:
        raise BadRequest("Choose Accept invitation or Decline.")
    if answer == "accept" and not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    try:
        if answer == "decline":
            signed_in = request.user if request.user.is_authenticated else None
            decline_invitation(found, signed_in)
            return render(request, "planning/invitation.html", {"declined": found})
        assert request.user.is_authenticated  # checked above
        membership = accept_invitation(found, request.user)
    except WrongAccount:
        return _invitation_page(request, found, "", status=403)
    messages.success(request, _welcome(membership))
    return redirect("planning:board", slug=membership.plan.slug)


def _invitation_page(
    request: HtmxHttpRequest, found: Invitation, token: str, status: int = 200
) -> HttpResponse:
    context = {
        "invitation": found,
        "token": token or found.link_token(),
        "inviter": _inviter(found),
        "wrong_account": request.user.is_authenticated and not email_matches(found, request.user),
    }
    return render(request, "planning/invitation.html", context, status=status)


def _gone(request: HtmxHttpRequest, gone: InvitationGone) -> HttpResponse:
    return render(request, "planning/invitation.html", {"gone": str(gone)}, status=gone.status)


def _welcome(membership: Membership) -> str:
    unit = f" for {membership.business_unit}" if membership.business_unit else ""
    role = membership.get_role_display()
    return f"Welcome to {membership.plan.name}: you are a member as {role}{unit}."


def _inviter(found: Invitation) -> str:
    user = found.invited_by
    return display_name(user) if user else "A facilitator"


@require_http_methods(["GET", "POST"])
def invitation_account(request: HtmxHttpRequest, token: str) -> HttpResponse:
    """Set up an account for the invited address, and join: the one way the app creates
    accounts outside the back-office."""
    try:
        found = invitation_from_link(token)
    except InvitationGone as gone:
        return _gone(request, gone)
    if request.user.is_authenticated:
        return redirect("invitation", token=token)
    form = AccountForm(request.POST or None, email=found.email)
    context = {"invitation": found, "token": token, "form": form}
    if account_exists(found):
        return render(request, "planning/invitation_account.html", {**context, "exists": True})
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        account = NewAccount(
            data["username"], data["first_name"], data["last_name"], data["password1"]
        )
        try:
            membership = join_with_new_account(found, account)
        except InvitationGone as gone:
            return _gone(request, gone)
        except MemberError as error:
            form.add_error(None, str(error))
        else:
            login(request, membership.user, backend="django.contrib.auth.backends.ModelBackend")
            messages.success(request, _welcome(membership))
            return redirect("planning:board", slug=membership.plan.slug)
    status = 400 if form.errors else 200
    return render(request, "planning/invitation_account.html", context, status=status)
