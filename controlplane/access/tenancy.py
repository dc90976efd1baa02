"""Which organization a request acts in, and what the user may do there."""

from __future__ import annotations

from typing import Any

from controlplane.access.exceptions import RoleRequired
from controlplane.access.tokens import is_agent
from controlplane.exceptions import NoOrganization
from controlplane.models import Membership, Organization, Role, Workspace

SESSION_ORG = "backstop_org_id"


def memberships(user: Any) -> list[Membership]:
    return list(
        Membership.objects.filter(user_id=user.pk)
        .select_related("org")
        .order_by("org__created_at", "org_id")
    )


def current_membership(request: Any) -> Membership:
    """Return the membership a request acts under: the organization chosen in the org
    switcher, else the user's first one. An agent's token acts in its own organization."""
    if is_agent(request.user):
        return Membership(org=request.user.org, role=Role.AGENT)
    chosen = request.session.get(SESSION_ORG) if hasattr(request, "session") else None
    mine = Membership.objects.filter(user_id=request.user.pk).select_related("org")
    membership = (mine.filter(org_id=chosen).first() if chosen else None) or mine.order_by(
        "org__created_at", "org_id"
    ).first()
    if membership is None:
        raise NoOrganization(f"User {request.user} belongs to no organization.")
    return membership


def current_org(request: Any) -> Organization:
    return current_membership(request).org


def default_workspace(org: Organization) -> Workspace:
    workspace = org.workspaces.order_by("id").first()
    if workspace is None:
        raise NoOrganization(f"Organization {org} has no workspace.")
    return workspace


# Who may do what, the least powerful role first (the one a refusal tells a person to ask for).
SUBMITTERS = (Role.OPERATOR, Role.ADMIN, Role.AGENT)
OPERATORS = (Role.OPERATOR, Role.ADMIN)
APPROVERS = (Role.APPROVER, Role.ADMIN)
ADMINS = (Role.ADMIN,)


def can_submit(membership: Membership) -> bool:
    return membership.role in SUBMITTERS


def can_approve(membership: Membership) -> bool:
    return membership.role in APPROVERS


def can_administer(membership: Membership) -> bool:
    """Admins manage policies, members and tokens."""
    return membership.role in ADMINS


def can_operate(membership: Membership) -> bool:
    """Operators and admins run drills, cancel runs and retry rollbacks."""
    return membership.role in OPERATORS


def require(membership: Membership, roles: tuple[Role, ...], *, to: str) -> Membership:
    """Return the membership if its role is one of ``roles``; else raise RoleRequired,
    which names the role needed, so the 403 page and the API can say whom to ask."""
    if membership.role not in roles:
        raise RoleRequired(to=to, roles=roles, role=membership.role)
    return membership


def actor_of(user: Any) -> str:
    """Return how runs and events name who acted: ``agent:<name>`` or ``user:<name>``."""
    return str(user.get_username()) if is_agent(user) else f"user:{user.get_username()}"


def submission_workspace(request: Any, membership: Membership) -> Workspace:
    """Return where a request's decisions go: the agent's workspace or the org's default."""
    if is_agent(request.user):
        workspace: Workspace = request.user.service_account.workspace
        return workspace
    return default_workspace(membership.org)
