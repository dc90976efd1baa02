"""Error pages with the navigation: 403 names the role needed, 404 never says whether an
object exists elsewhere, 405 says which method an action's address takes and where to go."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import render
from django.urls import reverse
from django.views import defaults

from controlplane.access.exceptions import RoleRequired

logger = logging.getLogger("controlplane.pages")


def forbidden(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Render 403 with what was refused and, for a role check, the role to ask an admin for."""
    context = {
        "reason": str(exception or "") or "Your role in this organization may not do this.",
        "refusal": exception if isinstance(exception, RoleRequired) else None,
    }
    return render(request, "403.html", context, status=403)


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Render 404 the same way for a missing object and another organization's: neither
    the exception's text nor the id is shown, so nothing tells the two apart."""
    return render(request, "404.html", status=404)


def server_error(request: HttpRequest) -> HttpResponse:
    """Render 500 with the navigation, or without it when rendering the page's context
    fails too (the database may be what broke)."""
    try:
        return render(request, "500.html", status=500)
    except Exception:
        logger.exception("the 500 page could not render with its context")
        return defaults.server_error(request)


@dataclass(frozen=True)
class ActionAddress:
    """What an action's address does and which button sends it, and the page to go to."""

    does: str
    page: str
    where: Callable[[dict[str, str]], str]


def _to(name: str) -> Callable[[dict[str, str]], str]:
    return lambda kwargs: reverse(name, kwargs=kwargs)


def _page(name: str) -> Callable[[dict[str, str]], str]:
    return lambda _: reverse(name)


def _home(_: dict[str, str]) -> str:
    return "/"


ACTION_ADDRESSES = {
    "run-approve": ActionAddress(
        "approves a held run: the Approve button on Approvals and on the decision's timeline "
        "sends it",
        "Approvals",
        _page("approvals"),
    ),
    "run-reject": ActionAddress(
        "rejects a held run: the Reject button on Approvals and on the decision's timeline "
        "sends it",
        "Approvals",
        _page("approvals"),
    ),
    "run-rollback": ActionAddress(
        "retries the rollback of a run that could not be undone: the Retry the rollback "
        "button on the run's page sends it",
        "the run's page",
        _to("run"),
    ),
    "token-revoke": ActionAddress(
        "revokes an API token: the Revoke button on API tokens sends it",
        "API tokens",
        _page("tokens"),
    ),
    "drill-start": ActionAddress(
        "starts a drill: the Start drill button on Drills sends it", "Drills", _page("drills")
    ),
    "drill-all": ActionAddress(
        "starts every drill: the Drill everything button on Drills sends it",
        "Drills",
        _page("drills"),
    ),
    "drill-schedule": ActionAddress(
        "schedules a drill: the Schedule button on Drills sends it", "Drills", _page("drills")
    ),
    "switch-org": ActionAddress(
        "switches your organization: the organization menu at the top sends it",
        "the overview",
        _home,
    ),
    "logout": ActionAddress(
        "logs you out: the Log out button at the top sends it", "the overview", _home
    ),
}
ANYWHERE = ActionAddress("changes something: a button on a page sends it", "the overview", _home)


class BrandedMethodNotAllowed:
    """Turn the bare 405 of ``require_POST`` and friends into a page that says which
    method the address takes and where a person does what it does. The API's 405s
    (with a body) pass through."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if not isinstance(response, HttpResponseNotAllowed) or response.content:
            return response
        match = request.resolver_match
        address = ACTION_ADDRESSES.get(match.url_name or "", ANYWHERE) if match else ANYWHERE
        context = {
            "method": request.method,
            "allowed": [m.strip() for m in response["Allow"].split(",")],
            "does": address.does,
            "page": address.page,
            "where": address.where(match.kwargs if match else {}),
        }
        page = render(request, "405.html", context, status=405)
        page["Allow"] = response["Allow"]
        return page
