"""The overview, the landing page: is everything all right in this organization?

htmx re-fetches its body every few seconds; that request renders only the partial.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET
from django.views.decorators.vary import vary_on_headers

from controlplane.access.tenancy import current_membership
from controlplane.pages import overview_chart, overview_data
from controlplane.pages.decisions import HtmxHttpRequest

POLL = "every 5s"


@require_GET
@login_required
@vary_on_headers("HX-Request")
def overview(request: HtmxHttpRequest) -> HttpResponse:
    org = current_membership(request).org
    data = overview_data.overview(org)
    template = "controlplane/overview.html"
    if request.htmx:
        template += "#overview"
    context = {
        "org": org,
        "o": data,
        "chart": overview_chart.draw(data.hours),
        "legend": overview_chart.SERIES,
        "poll": POLL,
    }
    return render(request, template, context)
