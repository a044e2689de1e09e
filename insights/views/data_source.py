"""The plan's data source (issue #14): imported events, or a table on the customer's Spark
cluster. Facilitators change it; every member reads where the numbers come from."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from planning.http import AuthenticatedHttpRequest
from planning.views.access import get_plan_for_user, require_facilitator

from ..forms import DataSourceForm
from ..services.sources import data_source_of, save_data_source


@require_http_methods(["GET", "POST"])
@login_required
def data_source(request: AuthenticatedHttpRequest, slug: str) -> HttpResponse:
    plan, membership = get_plan_for_user(request.user, slug)
    record = data_source_of(plan)
    form = DataSourceForm(instance=record)
    if request.method == "POST":
        require_facilitator(membership)
        form = DataSourceForm(request.POST, instance=record)
        if form.is_valid():
            # The check runs in the request: a few seconds at most (three quick tries).
            record = save_data_source(form.save(commit=False), user=request.user)
            if record.on_spark and not record.last_check_ok:
                messages.warning(request, "Saved, but the cluster cannot be read yet.")
            else:
                messages.success(request, "Data source saved.")
            return redirect("insights:data_source", slug=plan.slug)
    if not membership.can_manage:
        for field in form.fields.values():
            field.disabled = True
    return render(
        request,
        "insights/data_source.html",
        {"plan": plan, "membership": membership, "form": form, "source": record},
    )
