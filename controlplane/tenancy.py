"""Which organization a request acts in, and what the user may do there."""

from __future__ import annotations

from typing import Any

from controlplane.exceptions import NoOrganization
from controlplane.models import Membership, Organization, Role, Workspace


def current_membership(user: Any) -> Membership:
    """Return the membership a user acts under (their first organization)."""
    membership = (
        Membership.objects.filter(user_id=user.pk)
        .select_related("org")
        .order_by("org__created_at", "org_id")
        .first()
    )
    if membership is None:
        raise NoOrganization(f"User {user} belongs to no organization.")
    return membership


def current_org(user: Any) -> Organization:
    return current_membership(user).org


def default_workspace(org: Organization) -> Workspace:
    workspace = org.workspaces.order_by("id").first()
    if workspace is None:
        raise NoOrganization(f"Organization {org} has no workspace.")
    return workspace


def can_submit(membership: Membership) -> bool:
    return membership.role in (Role.OPERATOR, Role.ADMIN)


def can_operate(membership: Membership) -> bool:
    """Operators and admins run drills, cancel runs and retry rollbacks."""
    return membership.role in (Role.OPERATOR, Role.ADMIN)
