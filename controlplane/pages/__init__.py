from controlplane.pages.admin_pages import policies, revoke, tokens
from controlplane.pages.approvals import approvals, decide
from controlplane.pages.decisions import decision_detail, decision_list
from controlplane.pages.drills import drill_detail, drills, schedule, start, start_all
from controlplane.pages.organizations import switch_org
from controlplane.pages.overview import overview
from controlplane.pages.runs import run_detail, run_evidence_download, run_rollback
from controlplane.pages.workflows import workflows

__all__ = [
    "approvals",
    "decide",
    "decision_detail",
    "decision_list",
    "drill_detail",
    "drills",
    "overview",
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
