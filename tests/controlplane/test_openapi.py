"""The OpenAPI schema matches what the API does: schemathesis against the real views, with
an agent's token: no server error, no response outside the schema, no route that ignores
authentication. Bounded so that it runs in CI in well under five minutes."""

import os
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.core import signals
from django.db import close_old_connections
from django.test import Client
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import ignored_auth, response_schema_conformance

from controlplane.access.tokens import create_token
from controlplane.models import ServiceAccount
from controlplane.wsgi import application
from tests.conftest import rebalance, submit

schema = schemathesis.openapi.from_wsgi("/api/schema/", application)
# Examples per operation: small in CI, more for a deeper run (BACKSTOP_API_EXAMPLES=500).
EXAMPLES = int(os.environ.get("BACKSTOP_API_EXAMPLES", "25"))


@pytest.fixture
def token(agent: ServiceAccount) -> Iterator[str]:
    submit(agent, rebalance())  # something to find
    # As Django's test client does: keep the test's connection open across requests.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield create_token(service_account=agent, created_by="test")[1]
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.mark.django_db
@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case: Any, token: str) -> None:
    case.call_and_validate(
        headers={"Authorization": f"Bearer {token}"},
        checks=[not_a_server_error, response_schema_conformance, ignored_auth],
    )


def test_schema_and_docs_are_served_locally(client: Client) -> None:
    spec = client.get("/api/schema/")
    assert spec.status_code == 200
    assert b"/api/v1/mutations/" in spec.content and b"bearerAuth" in spec.content
    docs = client.get("/api/docs/").content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in docs
    assert "cdn" not in docs.lower()
