"""Switching the organization a user acts in."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from controlplane.access.tenancy import SESSION_ORG
from controlplane.models import Membership


@require_POST
@login_required
def switch_org(request: HttpRequest) -> HttpResponse:
    membership = Membership.objects.filter(
        user_id=request.user.pk or 0, org_id=request.POST.get("org_id", "")
    ).first()
    if membership is None:
        raise Http404("You are not a member of that organization.")
    request.session[SESSION_ORG] = membership.org_id
    return redirect("decisions")
