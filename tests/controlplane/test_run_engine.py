"""The engine a run is on, on its page and in the API; a run on Temporal links to its
workflow in the Temporal Web UI when TEMPORAL_UI_URL is set."""

from typing import Any

import pytest
from django.test import Client

from controlplane.models import Role, ServiceAccount
from runs.models import WorkflowRun
from tests.conftest import rebalance, submit
from tests.temporal import drain_on_temporal

pytestmark = pytest.mark.django_db(transaction=True)

UI = "http://127.0.0.1:8233"


@pytest.fixture
def viewer(client: Client, member: Any) -> Client:
    client.force_login(member("watcher", Role.VIEWER))
    return client


def page(client: Client, run: WorkflowRun) -> str:
    response = client.get(f"/runs/{run.run_id}/")
    assert response.status_code == 200
    return response.content.decode()


def test_run_on_temporal_links_to_its_workflow_in_the_temporal_ui(
    agent: ServiceAccount, viewer: Client, temporal: Any, settings: Any
) -> None:
    settings.TEMPORAL_UI_URL, settings.TEMPORAL_NAMESPACE = UI, "default"
    run = submit(agent, rebalance()).runs.get()
    drain_on_temporal()
    run.refresh_from_db()
    assert (run.status, run.engine) == ("completed", "temporal")

    html = page(viewer, run)

    link = f'href="{UI}/namespaces/default/workflows/{run.run_id}"'
    assert f'<dd data-testid="run-engine">Temporal · <a {link}' in html
    assert "not handed over yet" not in html
    decision_page = viewer.get(f"/decisions/{run.decision_id}/").content.decode()
    assert f"<dt>Engine</dt><dd>Temporal · <a {link}" in decision_page
    body = viewer.get(f"/api/v1/runs/{run.run_id}/").json()
    assert list(body)[-1] == "engine" and body["engine"] == "temporal"


def test_run_waiting_for_temporal_says_so_and_no_ui_url_means_no_link(
    agent: ServiceAccount, viewer: Client, settings: Any
) -> None:
    settings.BACKSTOP_ENGINE, settings.TEMPORAL_UI_URL = "temporal", ""
    run = submit(agent, rebalance()).runs.get()  # no Temporal worker: it stays pending

    html = page(viewer, run)

    waiting = '<span class="muted">(not handed over yet)</span>'
    assert f'<dd data-testid="run-engine">Temporal {waiting}</dd>' in html
    assert 'data-testid="temporal-link"' not in html


def test_built_in_run_names_its_engine_without_a_temporal_link(
    agent: ServiceAccount, viewer: Client, settings: Any
) -> None:
    settings.TEMPORAL_UI_URL = UI
    run = submit(agent, rebalance()).runs.get()

    html = page(viewer, run)

    assert '<dd data-testid="run-engine">Backstop&#x27;s runners</dd>' in html
    assert UI not in html
    assert viewer.get(f"/api/v1/runs/{run.run_id}/").json()["engine"] == "builtin"
