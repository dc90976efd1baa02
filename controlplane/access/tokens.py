"""API tokens for agents: created (and shown) once, stored as a hash, revocable."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from django.utils import timezone
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from controlplane.models import ApiToken, Organization, ServiceAccount


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_token(*, service_account: ServiceAccount, created_by: str) -> tuple[ApiToken, str]:
    """Return a new token and its full text, which is never stored and cannot be shown again."""
    lookup = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        org_id=service_account.org_id,
        service_account=service_account,
        lookup=lookup,
        secret_hash=_hash(secret),
        created_by=created_by,
    )
    return token, f"{ApiToken.PREFIX}_{lookup}_{secret}"


def revoke_token(token: ApiToken) -> None:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])


@dataclass(frozen=True)
class AgentPrincipal:
    """Who a token request acts as: an agent of one organization."""

    service_account: ServiceAccount
    token: ApiToken
    is_authenticated: bool = True
    is_anonymous: bool = False
    pk: None = None

    @property
    def org(self) -> Organization:
        return self.service_account.org

    def get_username(self) -> str:
        return self.service_account.actor

    def __str__(self) -> str:
        return self.service_account.actor


class TokenRefused(Exception):
    """A bearer token that does not name a live token: malformed, unknown or revoked."""


def principal_for(text: str) -> AgentPrincipal:
    """Return who a token's full text (``bst_<lookup>_<secret>``) acts as, or raise
    TokenRefused saying why not. Marks the token as used."""
    parts = text.strip().split("_", 2)
    if len(parts) != 3 or parts[0] != ApiToken.PREFIX:
        raise TokenRefused("Malformed token: expected bst_<id>_<secret>.")
    token = (
        ApiToken.objects.select_related("service_account__org", "service_account__workspace")
        .filter(lookup=parts[1])
        .first()
    )
    if token is None or not hmac.compare_digest(token.secret_hash, _hash(parts[2])):
        raise TokenRefused("Unknown token.")
    if token.revoked_at is not None:
        raise TokenRefused("This token was revoked.")
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now())
    return AgentPrincipal(service_account=token.service_account, token=token)


class BearerTokenAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer bst_<lookup>_<secret>``."""

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[AgentPrincipal, ApiToken] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header.startswith(f"{self.keyword} "):
            return None
        try:
            principal = principal_for(header.removeprefix(f"{self.keyword} "))
        except TokenRefused as refused:
            raise exceptions.AuthenticationFailed(str(refused)) from None
        return principal, principal.token

    def authenticate_header(self, request: Request) -> str:
        return self.keyword


def is_agent(user: Any) -> bool:
    return isinstance(user, AgentPrincipal)
