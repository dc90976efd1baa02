"""Dashboard pages. Polled fragments render a template partial when htmx asks."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET
from django.views.decorators.vary import vary_on_headers
from django_htmx.middleware import HtmxDetails

from controlplane import selectors
from controlplane.tenancy import current_org

# htmx stops polling when a response has this status.
HTMX_STOP_POLLING = 286
LIST_PAGE_SIZE = 50


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


@require_GET
@login_required
@vary_on_headers("HX-Request")
def decision_list(request: HtmxHttpRequest) -> HttpResponse:
    org = current_org(request.user)
    decisions = list(selectors.decisions_for(org)[:LIST_PAGE_SIZE])
    rows = [
        {
            "decision": d,
            "status": selectors.decision_status(d),
            "platforms": selectors.decision_platforms(d),
        }
        for d in decisions
    ]
    template = "controlplane/decision_list.html"
    if request.htmx:
        template += "#rows"
    return render(request, template, {"org": org, "rows": rows})


@require_GET
@login_required
@vary_on_headers("HX-Request")
def decision_detail(request: HtmxHttpRequest, decision_id: str) -> HttpResponse:
    org = current_org(request.user)
    timeline = selectors.timeline(org, decision_id)
    run = timeline.run
    live = run is not None and not run.is_terminal
    template = "controlplane/decision_detail.html"
    status = 200
    if request.htmx:
        template += "#timeline"
        status = 200 if live else HTMX_STOP_POLLING
    return render(request, template, {"org": org, "t": timeline, "live": live}, status=status)
