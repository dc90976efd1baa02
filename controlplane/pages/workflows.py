"""The workflows page: every registered definition, where it came from, and its steps."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from controlplane.access.tenancy import current_membership
from mutations.connectors import get_connector, known_platforms
from runs.workflows.registry import registered


@require_GET
@login_required
def workflows(request: HttpRequest) -> HttpResponse:
    membership = current_membership(request)
    definitions = sorted(registered().values(), key=lambda w: (w.id, -w.version))
    platforms = [get_connector(name) for name in known_platforms()]
    return render(
        request,
        "controlplane/workflows.html",
        {"org": membership.org, "workflows": definitions, "platforms": platforms},
    )
