"""The decision list and timeline. Polled fragments render a template partial for htmx."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import connection, transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST
from django.views.decorators.vary import vary_on_headers
from django_htmx.middleware import HtmxDetails

from controlplane.access.tenancy import (
    actor_of,
    can_approve,
    can_operate,
    current_membership,
    current_org,
)
from controlplane.intake.redrive import (
    REASON_MAX_LENGTH,
    RedriveRefused,
    redrivable,
    redrive_decision,
)
from controlplane.models import Decision, decision_status
from controlplane.pages import queries, view_models
from controlplane.pages.amounts import amount_of
from controlplane.pages.forms import DRILLS_DEFAULT, Cursor, DecisionFilterForm
from mutations.models import LogHead
from mutations.services import Surface
from runs.models import RunStatus

# htmx stops polling when a response has this status.
HTMX_STOP_POLLING = 286
LIST_PAGE_SIZE = 50
# Runs that end without executing a step have no duration to show.
NOT_EXECUTED = {RunStatus.AWAITING_APPROVAL, RunStatus.REJECTED, RunStatus.EXPIRED}


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


@require_GET
@login_required
@vary_on_headers("HX-Request")
def decision_list(request: HtmxHttpRequest) -> HttpResponse:
    org = current_org(request)
    form = DecisionFilterForm(request.GET)
    form.is_valid()
    # The fields that are valid still filter (drills hidden by default); the errors say
    # what to fix in the others.
    filters = {"drills": DRILLS_DEFAULT, **form.cleaned_data}
    decisions, next_cursor = queries.decision_page(org, filters, size=LIST_PAGE_SIZE)
    next_query = None
    if next_cursor is not None:
        query = request.GET.copy()
        query["after"] = Cursor.encode(*next_cursor)
        next_query = query.urlencode()
    with_drills = request.GET.copy()
    with_drills["drills"] = "include"
    with_drills.pop("after", None)
    now = timezone.now()
    rows = [
        {
            "decision": d,
            "status": decision_status(d),
            "platforms": view_models.decision_platforms(d),
            "amount": amount_of(d.action),
            **_run_time(d, now),
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
        "drills_hidden": filters["drills"] == DRILLS_DEFAULT,
        "with_drills_query": with_drills.urlencode(),
        "next_query": next_query,
        "paged": bool(filters.get("after")),
        "poll_url": request.get_full_path(),
    }
    return render(request, template, context, status=400 if form.errors else 200)


def _run_time(decision: Decision, now: datetime) -> dict[str, object]:
    """Return how long the decision's run took, or has taken so far while it executes
    (a held run's wait for a person is not part of it)."""
    began: datetime | None = getattr(decision, "run_began_at", None)
    finished: datetime | None = getattr(decision, "run_finished_at", None)
    status = getattr(decision, "run_status", None)
    if began is None or status in NOT_EXECUTED:
        return {"took": None, "running": False}
    if finished is not None:
        return {"took": max(finished - began, timedelta(0)), "running": False}
    return {"took": max(now - began, timedelta(0)), "running": True}


@require_GET
@login_required
@vary_on_headers("HX-Request")
def decision_detail(request: HtmxHttpRequest, decision_id: str) -> HttpResponse:
    # One snapshot for the whole page: a run read as ended has every mutation it made, so
    # the last refresh (which stops the polling) never shows the run ahead of its log.
    first = not connection.in_atomic_block  # the isolation level is the outer block's
    with transaction.atomic():
        if first and connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        return _decision_detail(request, decision_id)


def _decision_detail(request: HtmxHttpRequest, decision_id: str) -> HttpResponse:
    membership = current_membership(request)
    org = membership.org
    timeline = queries.timeline(
        org,
        decision_id,
        all_rows=request.GET.get("rows") == "all",
        event_kind=request.GET.get("kind", ""),
    )
    run = timeline.run
    live = run is not None and not run.is_terminal
    template = "controlplane/decision_detail.html"
    status = 200
    if request.htmx:
        template += "#timeline"
        status = 200 if live else HTMX_STOP_POLLING
    context = {
        "org": org,
        "t": timeline,
        "live": live,
        "can_approve": can_approve(membership),
        "voter": actor_of(request.user),
        "redrive": _redrive_offer(timeline.runs, can_operate(membership)),
        "reason_max_length": REASON_MAX_LENGTH,
    }
    return render(request, template, context, status=status)


def _redrive_offer(views: list[view_models.RunView], may: bool) -> dict[str, object] | None:
    """Return what the redrive form says (the next attempt, the run it follows), or None
    when the decision's latest run cannot be redriven or the member may not."""
    latest = views[-1].run if views else None
    if not may or latest is None or not redrivable(latest):
        return None
    return {"attempt": len(views) + 1, "after": latest}


@require_POST
@login_required
def redrive(request: HttpRequest, decision_id: str) -> HttpResponse:
    """Run a failed, compensated or expired decision again as a new attempt, with a reason."""
    membership = current_membership(request)
    decision = queries.get_decision(membership.org, decision_id)
    try:
        done = redrive_decision(
            membership=membership,
            user=request.user,
            decision_id=decision.id,
            reason=request.POST.get("reason", "")[:REASON_MAX_LENGTH],
            surface=Surface.DASHBOARD,
        )
    except (RedriveRefused, ValueError) as refused:
        messages.error(request, str(refused))
    except Decision.DoesNotExist as missing:
        raise Http404 from missing
    else:
        if done.run is None:
            messages.error(request, f"Attempt {done.attempt}: the policy denies it now.")
        elif done.run.status == RunStatus.AWAITING_APPROVAL:
            messages.success(request, f"Attempt {done.attempt} is held for an approver.")
        else:
            messages.success(request, f"Attempt {done.attempt} started ({done.run.run_id}).")
    return redirect(reverse("decision", args=[decision.id]))
