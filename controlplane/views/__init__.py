from controlplane.views.admin_pages import policies, revoke, tokens
from controlplane.views.decisions import decision_detail, decision_list
from controlplane.views.drills import drill_detail, drills, schedule, start, start_all
from controlplane.views.organizations import approvals, decide, switch_org
from controlplane.views.runs import run_detail, run_evidence_download, run_rollback
from controlplane.views.workflows import workflows

__all__ = [
    "approvals",
    "decide",
    "decision_detail",
    "decision_list",
    "drill_detail",
    "drills",
    "policies",
    "revoke",
    "run_detail",
    "run_evidence_download",
    "run_rollback",
    "schedule",
    "start",
    "start_all",
    "switch_org",
    "tokens",
    "workflows",
]
