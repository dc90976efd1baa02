from typing import Any

from django.http import HttpRequest

from controlplane.access.tenancy import SESSION_ORG, memberships


def tenancy(request: HttpRequest) -> dict[str, Any]:
    """Give every page the user's organizations for the org switcher."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated or not user.pk:
        return {}  # anonymous, or an agent's token (no organizations to switch)
    mine = memberships(request.user)
    chosen = request.session.get(SESSION_ORG)
    current = next((m for m in mine if m.org_id == chosen), mine[0] if mine else None)
    return {"memberships": mine, "current_membership": current}
