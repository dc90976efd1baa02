from typing import Any

from django.http import HttpRequest

from controlplane.access.tenancy import SESSION_ORG, memberships
from runs.models import RunStatus, WorkflowRun


def tenancy(request: HttpRequest) -> dict[str, Any]:
    """Give every page the user's organizations for the org switcher, and the number of
    runs waiting for an approver in the current one (the navigation shows it)."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated or not user.pk:
        return {}  # anonymous, or an agent's token (no organizations to switch)
    mine = memberships(request.user)
    chosen = request.session.get(SESSION_ORG)
    current = next((m for m in mine if m.org_id == chosen), mine[0] if mine else None)
    pending = 0
    if current is not None:
        held = WorkflowRun.objects.filter(org_id=current.org_id, status=RunStatus.AWAITING_APPROVAL)
        pending = held.count()
    return {"memberships": mine, "current_membership": current, "pending_approvals": pending}
