from controlplane.views.decisions import decision_detail, decision_list
from controlplane.views.organizations import approvals, drills, policies, switch_org
from controlplane.views.runs import run_detail, run_evidence_download, run_rollback

__all__ = [
    "approvals",
    "decision_detail",
    "decision_list",
    "drills",
    "policies",
    "run_detail",
    "run_evidence_download",
    "run_rollback",
    "switch_org",
]
