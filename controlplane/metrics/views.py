"""``GET /metrics``: protected by a bearer token (``BACKSTOP_METRICS_TOKEN``) or by the
scraper's address (``BACKSTOP_METRICS_ALLOWED_ADDRESSES``); either lets a request in.
With neither set the endpoint does not exist (404)."""

from __future__ import annotations

import hmac
import ipaddress
from functools import cache

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from controlplane.metrics.collectors import DatabaseCollector, RunnerCollector, org_slugs

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@require_GET
@never_cache
def metrics(request: HttpRequest) -> HttpResponse:
    token: str = settings.BACKSTOP_METRICS_TOKEN
    addresses: list[str] = settings.BACKSTOP_METRICS_ALLOWED_ADDRESSES
    if not token and not addresses:
        raise Http404("Set BACKSTOP_METRICS_TOKEN or BACKSTOP_METRICS_ALLOWED_ADDRESSES.")
    if not (_token_matches(request, token) or _address_allowed(request, tuple(addresses))):
        if token:
            response = HttpResponse("A valid bearer token is required.\n", status=401)
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
        return HttpResponse("This address may not read the metrics.\n", status=403)
    slugs = org_slugs()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(slugs))
    registry.register(RunnerCollector(slugs))
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


def _token_matches(request: HttpRequest, token: str) -> bool:
    if not token:
        return False
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )


def _address_allowed(request: HttpRequest, addresses: tuple[str, ...]) -> bool:
    if not addresses:
        return False
    try:
        remote = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(remote in network for network in _networks(addresses))


@cache
def _networks(addresses: tuple[str, ...]) -> list[Network]:
    networks = []
    for address in addresses:
        try:
            networks.append(ipaddress.ip_network(address, strict=False))
        except ValueError as error:
            raise ImproperlyConfigured(
                f"BACKSTOP_METRICS_ALLOWED_ADDRESSES: {address!r} is not an IP address or "
                f"network ({error})."
            ) from error
    return networks
