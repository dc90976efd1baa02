"""Policy texts: parsing with line-numbered errors, and evaluation against a decision.

Grammar::

    version: budget_policy_v1
    default: require_human          # when no rule matches: fail closed
    rules:
      - id: large-shift-needs-human
        when: { action.amount: { gt: 5000 } }
        decision: require_human
        approvals: 2                    # distinct approvers, never the submitter
        approver_roles: [approver, admin]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mutations.yamltext import FileInvalid, LineMapping, Problem, load_yaml

OUTCOMES = ("allow", "require_human", "deny")
SEVERITY = {outcome: rank for rank, outcome in enumerate(OUTCOMES)}
FAIL_CLOSED = "require_human"
AUTO_EXECUTABLE_RULE = "auto-executable-false"
IRREVERSIBLE_RULE = "irreversible-needs-explicit-allow"

NUMERIC_OPERATORS = frozenset({"gt", "gte", "lt", "lte"})
LIST_OPERATORS = frozenset({"in", "not_in"})
OPERATORS = NUMERIC_OPERATORS | LIST_OPERATORS | {"exists"}

# The inputs a rule may test; any `action.<field>` is allowed too.
INPUT_KEYS = frozenset(
    {
        "id",
        "type",
        "priority",
        "confidence",
        "summary",
        "reasoning",
        "auto_executable",
        "computed_at",
        "policy_version",
        "requested_by",
        "env",
        "approval_present",
        "workflow_id",
        "topic",
        "side_effect",
        "compensation_declared",
        "rollback_supported",
        "reversibility",
        "platforms",
    }
)
TOP_LEVEL_KEYS = frozenset({"version", "default", "description", "rules"})
RULE_KEYS = frozenset({"id", "when", "decision", "description", "approvals", "approver_roles"})
# A held run needs this many distinct approvers unless its rule asks for more.
ONE_APPROVAL = 1
MAX_APPROVALS = 10
# The roles that approve at all; a rule may narrow them, never widen them.
APPROVING_ROLES = ("approver", "admin")

_MISSING = object()


PolicyProblem = Problem


class PolicyInvalid(FileInvalid):
    def __init__(self, problems: list[Problem], *, source: str = "") -> None:
        super().__init__(problems, source=source)


@dataclass(frozen=True)
class Condition:
    key: str
    operator: str  # "eq" for a bare value
    operand: Any

    def holds(self, inputs: dict[str, Any]) -> bool:
        value = lookup(inputs, self.key)
        if self.operator == "exists":
            return (value is not _MISSING and value is not None) == self.operand
        if value is _MISSING:
            return False
        if self.operator == "eq":
            return bool(value == self.operand)
        if self.operator == "in":
            return value in self.operand
        if self.operator == "not_in":
            return value not in self.operand
        if not _is_number(value):
            return False
        return {
            "gt": value > self.operand,
            "gte": value >= self.operand,
            "lt": value < self.operand,
            "lte": value <= self.operand,
        }[self.operator]


@dataclass(frozen=True)
class Rule:
    id: str
    conditions: tuple[Condition, ...]
    decision: str
    approvals: int = ONE_APPROVAL
    approver_roles: tuple[str, ...] = ()

    def matches(self, inputs: dict[str, Any]) -> bool:
        return all(c.holds(inputs) for c in self.conditions)

    @property
    def names_irreversibility(self) -> bool:
        """Whether the rule was written for irreversible actions, so its allow is explicit."""
        return any(
            (c.key == "rollback_supported" and c.operator == "eq" and c.operand is False)
            or (c.key == "reversibility" and c.operator == "eq" and c.operand == "irreversible")
            or (c.key == "reversibility" and c.operator == "in" and "irreversible" in c.operand)
            for c in self.conditions
        )


@dataclass(frozen=True)
class Evaluation:
    outcome: str
    matched_rule_ids: list[str]
    deciding_rule_ids: list[str]
    # What a held run needs: how many distinct approvers, and of which roles (any if empty).
    approvals: int = ONE_APPROVAL
    approver_roles: tuple[str, ...] = ()


@dataclass(frozen=True)
class Policy:
    version: str
    default: str
    rules: tuple[Rule, ...]

    def evaluate(self, inputs: dict[str, Any]) -> Evaluation:
        """Return the most restrictive decision of all matching rules, or the default."""
        matched = [rule for rule in self.rules if rule.matches(inputs)]
        if matched:
            outcome = max((r.decision for r in matched), key=SEVERITY.__getitem__)
            deciding = [r.id for r in matched if r.decision == outcome]
        else:
            outcome, deciding = self.default, []
        matched_ids = [r.id for r in matched]
        explicit = any(r.names_irreversibility for r in matched if r.decision == "allow")
        if outcome == "allow" and inputs.get("rollback_supported") is False and not explicit:
            # An action that cannot be undone runs only where a rule says so explicitly.
            outcome, deciding = FAIL_CLOSED, [IRREVERSIBLE_RULE]
            matched_ids.append(IRREVERSIBLE_RULE)
        if inputs.get("auto_executable") is False and outcome == "allow":
            # An agent that says its decision is not auto-executable is always held.
            outcome, deciding = FAIL_CLOSED, [AUTO_EXECUTABLE_RULE]
            matched_ids.append(AUTO_EXECUTABLE_RULE)
        if outcome != FAIL_CLOSED:
            return Evaluation(outcome, matched_ids, deciding)
        holding = [r for r in matched if r.id in deciding]
        return Evaluation(outcome, matched_ids, deciding, *_approval_needs(holding))


def _approval_needs(rules: list[Rule]) -> tuple[int, tuple[str, ...]]:
    """Return what the rules holding a run ask of its approval, the most restrictive of
    each: the largest count, and the roles every rule that names roles allows."""
    count = max((r.approvals for r in rules), default=ONE_APPROVAL)
    named = [set(r.approver_roles) for r in rules if r.approver_roles]
    if not named:
        return count, ()
    common = set.intersection(*named)
    # Rules that share no role leave the most powerful one: a run is never held for nobody.
    return count, tuple(role for role in APPROVING_ROLES if role in common) or ("admin",)


def lookup(inputs: dict[str, Any], key: str) -> Any:
    value: Any = inputs
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# ---- parsing ------------------------------------------------------------------------------


def parse_policy(text: str) -> Policy:
    """Return the policy a text describes, or raise PolicyInvalid naming each line and field."""
    document = load_yaml(text, invalid=PolicyInvalid)
    problems: list[PolicyProblem] = []
    if not isinstance(document, LineMapping):
        raise PolicyInvalid(
            [PolicyProblem(1, "policy", "must be a mapping with version and rules")]
        )

    def problem(line: int | None, field: str, message: str) -> None:
        problems.append(PolicyProblem(line, field, message))

    for key in document:
        if key not in TOP_LEVEL_KEYS:
            problem(
                document.lines[key], key, f"unknown key; use {', '.join(sorted(TOP_LEVEL_KEYS))}"
            )
    version = document.get("version")
    if not isinstance(version, str) or not version.strip():
        problem(document.lines.get("version", document.line), "version", "required text")
    default = document.get("default", FAIL_CLOSED)
    if default not in OUTCOMES:
        problem(document.lines.get("default"), "default", f"must be one of {', '.join(OUTCOMES)}")
    raw_rules = document.get("rules", [])
    if not isinstance(raw_rules, list):
        problem(document.lines.get("rules"), "rules", "must be a list of rules")
        raw_rules = []
    rules: list[Rule] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(raw_rules):
        field = f"rules[{index}]"
        if not isinstance(raw, LineMapping):
            problem(document.lines.get("rules"), field, "must be a mapping with id, when, decision")
            continue
        rule = _parse_rule(raw, field, problem)
        if rule is None:
            continue
        if rule.id in seen:
            problem(
                raw.lines["id"],
                f"{field}.id",
                f"duplicate rule id {rule.id!r} (also rules[{seen[rule.id]}])",
            )
        seen.setdefault(rule.id, index)
        rules.append(rule)
    if problems:
        raise PolicyInvalid(sorted(problems, key=lambda p: p.line or 0))
    return Policy(version=str(version), default=str(default), rules=tuple(rules))


def _parse_rule(raw: LineMapping, field: str, problem: Any) -> Rule | None:
    ok = True
    for key in raw:
        if key not in RULE_KEYS:
            problem(
                raw.lines[key], f"{field}.{key}", f"unknown key; use {', '.join(sorted(RULE_KEYS))}"
            )
            ok = False
    rule_id = raw.get("id")
    if not isinstance(rule_id, str) or not rule_id.strip():
        problem(raw.lines.get("id", raw.line), f"{field}.id", "required text")
        ok = False
    decision = raw.get("decision")
    if decision not in OUTCOMES:
        problem(
            raw.lines.get("decision", raw.line),
            f"{field}.decision",
            f"must be one of {', '.join(OUTCOMES)}; got {decision!r}",
        )
        ok = False
    when = raw.get("when")
    conditions: list[Condition] = []
    if not isinstance(when, LineMapping) or not when:
        problem(
            raw.lines.get("when", raw.line), f"{field}.when", "required mapping of input: condition"
        )
        ok = False
    else:
        for key, value in when.items():
            condition = _parse_condition(
                key, value, when.lines[key], f"{field}.when.{key}", problem
            )
            if condition is None:
                ok = False
            else:
                conditions.extend(condition)
    approvals, approver_roles = _parse_approval_fields(raw, field, decision, problem)
    if not ok or approvals is None or approver_roles is None:
        return None
    return Rule(
        id=str(rule_id),
        conditions=tuple(conditions),
        decision=str(decision),
        approvals=approvals,
        approver_roles=approver_roles,
    )


def _parse_approval_fields(
    raw: LineMapping, field: str, decision: Any, problem: Any
) -> tuple[int | None, tuple[str, ...] | None]:
    """Return a rule's approvals and approver_roles, None for each that is invalid."""
    approvals: int | None = ONE_APPROVAL
    roles: tuple[str, ...] | None = ()
    for key in ("approvals", "approver_roles"):
        if key in raw and decision != FAIL_CLOSED:
            problem(raw.lines[key], f"{field}.{key}", f"only a {FAIL_CLOSED} rule takes {key}")
            approvals = None if key == "approvals" else approvals
            roles = None if key == "approver_roles" else roles
    if approvals is not None and "approvals" in raw:
        count = raw["approvals"]
        if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_APPROVALS:
            problem(
                raw.lines["approvals"],
                f"{field}.approvals",
                f"must be a whole number from 1 to {MAX_APPROVALS}; got {count!r}",
            )
            approvals = None
        else:
            approvals = count
    if roles is not None and "approver_roles" in raw:
        named = raw["approver_roles"]
        if (
            not isinstance(named, list)
            or not named
            or any(role not in APPROVING_ROLES for role in named)
        ):
            problem(
                raw.lines["approver_roles"],
                f"{field}.approver_roles",
                f"must be a list of {' and '.join(APPROVING_ROLES)}; got {named!r}",
            )
            roles = None
        else:
            roles = tuple(role for role in APPROVING_ROLES if role in named)
    return approvals, roles


def _parse_condition(
    key: str, value: Any, line: int, field: str, problem: Any
) -> list[Condition] | None:
    if key not in INPUT_KEYS and not (key.startswith("action.") and len(key) > len("action.")):
        problem(
            line,
            field,
            "unknown input; use action.<field> or one of " + ", ".join(sorted(INPUT_KEYS)),
        )
        return None
    if not isinstance(value, LineMapping):
        if isinstance(value, list):
            problem(line, field, "a list needs an operator: { in: [...] }")
            return None
        return [Condition(key, "eq", value)]
    conditions = []
    for operator, operand in value.items():
        where = f"{field}.{operator}"
        op_line = value.lines[operator]
        if operator not in OPERATORS:
            problem(op_line, where, f"unknown operator; use {', '.join(sorted(OPERATORS))}")
            return None
        if operator in NUMERIC_OPERATORS and not _is_number(operand):
            problem(op_line, where, f"needs a number; got {operand!r}")
            return None
        if operator in LIST_OPERATORS and not isinstance(operand, list):
            problem(op_line, where, f"needs a list; got {operand!r}")
            return None
        if operator == "exists" and not isinstance(operand, bool):
            problem(op_line, where, f"needs true or false; got {operand!r}")
            return None
        conditions.append(Condition(key, operator, operand))
    if not conditions:
        problem(line, field, "needs at least one operator")
        return None
    return conditions
