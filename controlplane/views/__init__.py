from controlplane.views.decisions import decision_detail, decision_list
from controlplane.views.organizations import approvals, decide, drills, policies, switch_org
from controlplane.views.runs import run_detail, run_evidence_download, run_rollback

__all__ = [
    "approvals",
    "decide",
    "decision_detail",
    "decision_list",
    "drills",
    "policies",
    "run_detail",
    "run_evidence_download",
    "run_rollback",
    "switch_org",
]
