"""Reading never writes: every GET route of the URLconf, crawled with real ids by each kind
of caller, leaves every table as it found it and never answers with a server error.

The routes come from the URLconf itself, so a new route is crawled without touching this
file; a route with a parameter the crawl cannot fill fails the test until the world below
gets ids for it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.apps import apps
from django.contrib.admin import site as admin_site
from django.contrib.auth.models import Group
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.models import Model
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from django.urls.exceptions import Resolver404
from django.urls.resolvers import RegexPattern, RoutePattern
from django.utils import timezone
from django.utils.regex_helper import normalize

from controlplane.access.tokens import create_token, revoke_token
from controlplane.devtools import sample_data
from controlplane.drills.start import start_drill
from controlplane.drills.verify import verify_finished_drills
from controlplane.models import ApiToken, Drill, DrillPlan, Role, ServiceAccount, Workspace
from controlplane.notify.models import EVENT_KINDS, Delivery
from controlplane.notify.services import create_endpoint
from runs.models import RunStatus, ScopeLock, WorkflowRun
from runs.periodic import Periodic
from tests.conftest import drain, rebalance, submit

pytestmark = pytest.mark.django_db(transaction=True)

ROUTE_PARAMETER = re.compile(r"<(?:[^>:]+:)?(?P<name>[^>]+)>")
WRITE = re.compile(r"^\s*(INSERT|UPDATE|DELETE|TRUNCATE|MERGE|CREATE|ALTER|DROP)\b", re.I)
# The one write a GET may make: a token's last-use time, which the tokens page shows.
BOOKKEEPING = re.compile(r'^UPDATE "controlplane_apitoken" SET "last_used_at" = ')
# Query strings that a list needs, or that change what it shows, by route name.
QUERIES = {
    "api-mutations": ["decision_id={decision_id}"],
    "api-events": ["decision_id={decision_id}"],
    "api-decisions": ["status=compensation_failed", "drills=only"],
    "decisions": ["status=awaiting_approval", "drills=exclude", "q={decision_id}"],
    "decision": ["rows=all"],
}


@dataclass(frozen=True)
class Route:
    """One endpoint of the URLconf: the pattern of each level down to it, and its view."""

    levels: tuple[RoutePattern | RegexPattern, ...]
    view: Callable[..., Any]
    name: str | None

    def __str__(self) -> str:
        return "".join(str(level) for level in self.levels)

    def parameters(self) -> list[str]:
        names: list[str] = []
        for level in self.levels:
            if isinstance(level, RoutePattern):
                names += ROUTE_PARAMETER.findall(str(level))
            else:
                names += normalize(str(level))[0][1]
        return names

    def url(self, values: dict[str, str]) -> str:
        """Return the path with each parameter replaced by its value."""
        path = "/"
        for level in self.levels:
            if isinstance(level, RoutePattern):
                path += ROUTE_PARAMETER.sub(lambda m: values[m["name"]], str(level))
            else:
                template, _ = normalize(str(level))[0]
                path += template % values
        return path


def routes(patterns: list[Any] | None = None, levels: tuple[Any, ...] = ()) -> Iterator[Route]:
    for entry in get_resolver().url_patterns if patterns is None else patterns:
        assert isinstance(entry.pattern, RoutePattern | RegexPattern), f"Cannot crawl {entry}"
        if isinstance(entry, URLResolver):
            yield from routes(entry.url_patterns, (*levels, entry.pattern))
        elif isinstance(entry, URLPattern):
            yield Route(levels=(*levels, entry.pattern), view=entry.callback, name=entry.name)


def row_counts() -> dict[str, int]:
    return {
        model._meta.db_table: model._base_manager.count()
        for model in apps.get_models(include_auto_created=True)
    }


def first_pk(model: type[Model]) -> str:
    row = model._base_manager.order_by("pk").first()
    assert row is not None, f"No {model.__name__} row: its admin pages would be empty."
    return str(row.pk)


@dataclass
class World:
    """Objects of every kind, and the clients that read them."""

    ids: dict[str, list[str]]
    admin: Client  # an org admin, also the installation's superuser: every page and the API
    agent: Client  # an agent's bearer token: the API


def drills(workspace: Workspace) -> list[Drill]:
    """Return drills whose runs ended compensated and compensation_failed, verified, and a
    last one whose run has finished but which the runners have not verified yet."""

    def start(fault: str) -> Drill:
        return start_drill(
            workspace=workspace,
            workflow_id="execute_rebalance_spend",
            step_id="credit_target_channel",
            fault=fault,
            started_by="user:boss",
        )

    verified = [start("rate_limit"), start("compensation_fails")]
    drain()
    verify_finished_drills()
    unverified = start("timeout")
    drain()
    return [*verified, unverified]


@pytest.fixture
def world(
    agent: ServiceAccount, member: Any, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> World:
    settings.BACKSTOP_AGENT_RATE = "100000/min"  # the crawl is not what the limit is for
    # No housekeeping pass of the runners: finished drills stay unverified, the very state
    # in which reading a drill once verified it.
    monkeypatch.setattr(Periodic, "run_due", lambda self: None)
    workspace = agent.workspace
    endpoint = create_endpoint(  # subscribed first: the held run below gives it a delivery
        org=agent.org, url="http://127.0.0.1:9/hook", kinds=list(EVENT_KINDS), created_by="boss"
    )
    timeline, running, _ = sample_data.decisions(agent, 3)
    sample_data.mutations(timeline, 2)
    held = submit(agent, rebalance(amount=7000))
    denied = submit(agent, rebalance(confidence=0.1))
    *verified, unverified = drills(workspace)
    # A run in progress, after the drains (which would finish it): its timeline still polls.
    live = running.runs.get()
    WorkflowRun.objects.filter(pk=live.pk).update(status=RunStatus.RUNNING, finished_at=None)
    ScopeLock.objects.create(org=agent.org, key="meta:all", run=live, acquired_at=timezone.now())
    DrillPlan.objects.create(
        org=agent.org,
        workspace=workspace,
        workflow_id="execute_rebalance_spend",
        step_id="credit_target_channel",
        fault="fatal",
        every_seconds=86_400,
        next_run_at=timezone.now(),
        created_by="user:boss",
    )
    _, secret = create_token(service_account=agent, created_by="user:boss")
    revoke_token(create_token(service_account=agent, created_by="user:boss")[0])
    Group.objects.create(name="auditors")
    boss = member("boss", Role.ADMIN)
    boss.is_staff = boss.is_superuser = True
    boss.save(update_fields=["is_staff", "is_superuser"])

    unverified.refresh_from_db()
    assert unverified.verifying, "the crawl must meet a finished drill not yet verified"
    statuses = set(WorkflowRun.objects.values_list("status", flat=True))
    assert {"completed", "compensated", "compensation_failed", "awaiting_approval"} <= statuses
    admin = Client()
    admin.force_login(boss)
    return World(
        ids={
            "decision_id": [timeline.id, running.id, held.id, denied.id, unverified.decision_id],
            "run_id": [str(pk) for pk in WorkflowRun.objects.values_list("pk", flat=True)],
            "drill_id": [*(d.id for d in verified), unverified.id],
            "token_id": [str(pk) for pk in ApiToken.objects.values_list("pk", flat=True)],
            "endpoint_id": [endpoint.pk],
            "delivery_id": [str(pk) for pk in Delivery.objects.values_list("pk", flat=True)],
            "id": [str(boss.pk)],  # the admin's password form
            "content_type_id": [str(ContentType.objects.get_for_model(Drill).pk)],
            "app_label": sorted({m._meta.app_label for m in admin_site._registry}),
            "url": ["no-such-page/"],  # the admin's catch-all
        },
        admin=admin,
        agent=Client(headers={"Authorization": f"Bearer {secret}"}),
    )


def fillings(route: Route, ids: dict[str, list[str]]) -> list[dict[str, str]]:
    """Return each way to fill the route's parameters with real ids; fail on an unknown one."""
    fills: list[dict[str, str]] = [{}]
    model_admin = getattr(route.view, "model_admin", None)
    for name in route.parameters():
        if name == "object_id":  # an admin page of one object, or the admin's "view on site"
            choices = [first_pk(model_admin.model if model_admin else Drill)]
        elif name in ids:
            choices = ids[name]
        else:
            pytest.fail(f"The crawl cannot fill <{name}> of {route}: give the world its ids.")
        fills = [{**fill, name: choice} for fill in fills for choice in choices]
    return fills


def urls(route: Route, ids: dict[str, list[str]]) -> list[str]:
    """Return the route's URLs with real ids, and with the query strings QUERIES gives it."""
    found = []
    for values in fillings(route, ids):
        url = route.url(values)
        try:
            match = resolve(url)
        except Resolver404:
            pytest.fail(f"{url}, filled from {route}, does not resolve.")
        assert match.func is route.view, f"{url} reaches another view than {route}"
        found.append(url)
    for query in QUERIES.get(route.name or "", []):
        choices = ids["decision_id"] if "{decision_id}" in query else [""]
        found += [f"{found[0]}?{query.format(decision_id=choice)}" for choice in choices]
    return found


class Links(HTMLParser):
    """The same-site links of a page: what a person (or htmx) would GET from it."""

    def __init__(self) -> None:
        super().__init__()
        self.found: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("href", "hx-get") and value and value.startswith(("/", "?")):
                self.found.add(value)


def links_on(url: str, response: Any) -> set[str]:
    if response.status_code != 200 or "text/html" not in response.get("Content-Type", ""):
        return set()
    parser = Links()
    parser.feed(response.content.decode())
    path = urlsplit(url).path
    return {
        link if link.startswith("/") else path + link
        for link in parser.found
        if not link.startswith(("/admin/", "/static/"))
    }


def crawl(world: World) -> list[str]:
    """GET every route as every caller, the pages again as htmx does, then every link the
    pages offer; return the requests that failed with a server error."""
    requests: list[tuple[str, Client, str, dict[str, str]]] = []
    every_route = list(routes())
    assert {name for name in QUERIES} <= {route.name for route in every_route}
    for route in every_route:
        for url in urls(route, world.ids):
            requests += [("admin", world.admin, url, {}), ("agent", world.agent, url, {})]
            if not url.startswith("/admin/"):
                requests.append(("admin via htmx", world.admin, url, {"HX-Request": "true"}))
    failed, links = [], set()
    for who, client, url, headers in requests:
        response = client.get(url, headers=headers)
        if response.status_code >= 500:
            failed.append(f"{who}: GET {url} answered {response.status_code}")
        if who == "admin" and not url.startswith("/admin/"):
            links |= links_on(url, response)
    for link in sorted(links - {url for _, _, url, _ in requests}):
        response = world.admin.get(link)
        if response.status_code >= 500:
            failed.append(f"admin: GET {link} (a link on a page) answered {response.status_code}")
    return failed


def test_no_get_changes_a_row_or_fails(world: World) -> None:
    before = row_counts()
    with CaptureQueriesContext(connection) as captured:
        failed = crawl(world)
    after = row_counts()

    assert failed == []
    assert {table: (n, after[table]) for table, n in before.items() if after[table] != n} == {}
    # Counts miss an UPDATE: a GET that wrote a report into a row changed no count.
    writes = [
        query["sql"]
        for query in captured.captured_queries
        if WRITE.match(query["sql"]) and not BOOKKEEPING.match(query["sql"])
    ]
    assert writes == []
    assert Drill.objects.filter(pk=world.ids["drill_id"][-1], verified_at=None).exists()
