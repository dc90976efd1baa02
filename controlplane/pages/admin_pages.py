"""Pages only admins may change: policy versions and the agents' API tokens."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from controlplane.access.tenancy import (
    ADMINS,
    actor_of,
    can_administer,
    current_membership,
    default_workspace,
    require,
)
from controlplane.access.tokens import create_token, revoke_token
from controlplane.models import (
    ApiToken,
    Membership,
    PolicyActivation,
    PolicyVersion,
    ServiceAccount,
)
from controlplane.policy.rules import PolicyInvalid, PolicyProblem, parse_policy
from controlplane.policy.versions import activate_policy, dry_run

MAX_POLICY_BYTES = 256 * 1024


def _admin(request: HttpRequest, *, to: str) -> Membership:
    """Return the member's membership; a change needs an admin (anyone may read)."""
    membership = current_membership(request)
    if request.method == "POST":
        require(membership, ADMINS, to=to)
    return membership


@require_http_methods(["GET", "POST"])
@login_required
def policies(request: HttpRequest) -> HttpResponse:
    membership = _admin(request, to="validate, dry-run or activate policies")
    org = membership.org
    workspace = default_workspace(org)
    context: dict[str, object] = {"org": org, "workspace": workspace, "text": ""}
    if request.method == "POST":
        action = request.POST.get("action", "validate")
        try:
            text = context["text"] = _submitted_text(request)
            policy = parse_policy(text)
            if action == "activate":
                version = activate_policy(
                    workspace=workspace, text=text, activated_by=actor_of(request.user)
                )
                messages.success(request, f"{version.version} is now the active policy.")
                return redirect("policies")
            if action == "dry_run":
                replayed, differences = dry_run(workspace=workspace, text=text)
                context |= {"replayed": replayed, "differences": differences}
            context["valid"] = policy
        except PolicyInvalid as invalid:
            context["problems"] = invalid.problems
    context |= {
        "versions": PolicyVersion.objects.filter(org=org)
        .select_related("workspace")
        .order_by("-is_active", "-activated_at"),
        "activations": PolicyActivation.objects.filter(workspace__org=org).select_related("policy")[
            :50
        ],
        "can_administer": can_administer(membership),
    }
    status = 400 if context.get("problems") else 200
    return render(request, "controlplane/policies.html", context, status=status)


def _submitted_text(request: HttpRequest) -> str:
    upload = request.FILES.get("file")
    if upload is None:
        return request.POST.get("text", "")[:MAX_POLICY_BYTES]
    if upload.size and upload.size > MAX_POLICY_BYTES:
        raise PolicyInvalid([PolicyProblem(None, "file", "is over 256 KiB")])
    try:
        return upload.read().decode("utf-8")
    except UnicodeDecodeError:
        raise PolicyInvalid([PolicyProblem(None, "file", "is not UTF-8 text")]) from None


@require_http_methods(["GET", "POST"])
@login_required
def tokens(request: HttpRequest) -> HttpResponse:
    membership = require(current_membership(request), ADMINS, to="see or create API tokens")
    org = membership.org
    created = None
    if request.method == "POST":
        name = request.POST.get("service_account", "").strip()
        account = ServiceAccount.objects.filter(org=org, name=name).first()
        if account is None:
            messages.error(request, f"No service account {name!r} in {org.name}.")
        else:
            _, created = create_token(service_account=account, created_by=actor_of(request.user))
    context = {
        "org": org,
        "accounts": ServiceAccount.objects.filter(org=org).order_by("name"),
        "tokens": ApiToken.objects.filter(org=org)
        .select_related("service_account")
        .order_by("-created_at"),
        "created": created,
    }
    return render(request, "controlplane/tokens.html", context)


@require_POST
@login_required
def revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    membership = _admin(request, to="revoke API tokens")
    token = get_object_or_404(ApiToken, pk=token_id, org=membership.org)
    revoke_token(token)
    messages.success(request, f"Token {token} revoked: requests with it now get 401.")
    return redirect("tokens")
