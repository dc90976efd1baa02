"""The decision list and timeline. Polled fragments render a template partial for htmx."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET
from django.views.decorators.vary import vary_on_headers
from django_htmx.middleware import HtmxDetails

from controlplane.access.tenancy import can_approve, current_membership, current_org
from controlplane.models import decision_status
from controlplane.pages import queries, view_models
from controlplane.pages.forms import Cursor, DecisionFilterForm
from mutations.models import LogHead

# htmx stops polling when a response has this status.
HTMX_STOP_POLLING = 286
LIST_PAGE_SIZE = 50


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


@require_GET
@login_required
@vary_on_headers("HX-Request")
def decision_list(request: HtmxHttpRequest) -> HttpResponse:
    org = current_org(request)
    form = DecisionFilterForm(request.GET or None)
    filters = form.cleaned_data if form.is_valid() else {}
    decisions, next_cursor = queries.decision_page(org, filters, size=LIST_PAGE_SIZE)
    next_query = None
    if next_cursor is not None:
        query = request.GET.copy()
        query["after"] = Cursor.encode(*next_cursor)
        next_query = query.urlencode()
    rows = [
        {
            "decision": d,
            "status": decision_status(d),
            "platforms": view_models.decision_platforms(d),
        }
        for d in decisions
    ]
    template = "controlplane/decision_list.html"
    if request.htmx:
        template += "#rows"
    context = {
        "org": org,
        "log": LogHead.objects.filter(org=org).first(),
        "rows": rows,
        "form": form,
        "next_query": next_query,
        "paged": bool(filters.get("after")),
        "poll_url": request.get_full_path(),
    }
    return render(request, template, context, status=400 if form.errors else 200)


@require_GET
@login_required
@vary_on_headers("HX-Request")
def decision_detail(request: HtmxHttpRequest, decision_id: str) -> HttpResponse:
    membership = current_membership(request)
    org = membership.org
    timeline = queries.timeline(org, decision_id, all_rows=request.GET.get("rows") == "all")
    run = timeline.run
    live = run is not None and not run.is_terminal
    template = "controlplane/decision_detail.html"
    status = 200
    if request.htmx:
        template += "#timeline"
        status = 200 if live else HTMX_STOP_POLLING
    context = {"org": org, "t": timeline, "live": live, "can_approve": can_approve(membership)}
    return render(request, template, context, status=status)
