"""The state comparison: a run's scope before and after it, object by object, field by
field, with the values in between replayed from its Mutation Log entries.

The hashes prove that the state came back; these values explain what it was. A snapshot is
what ``mutations.hashing.snapshot_scopes`` returned, kept on the run (``before_state``,
``after_state``) beside the hash computed from it.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from mutations.hashing import state_hash
from mutations.models import Mutation
from runs.models import RunStatus

MINUS = "\u2212"
APPLIED = frozenset({Mutation.Status.SUCCESS, Mutation.Status.ROLLED_BACK})
# Statuses whose run had to leave the state as it found it: a rollback ran, or nothing applied.
NET_ZERO_EXPECTED = frozenset(
    {RunStatus.COMPENSATED, RunStatus.COMPENSATION_FAILED, RunStatus.FAILED}
)
# Keys Backstop adds to a compensation's payload: bookkeeping, not a change.
LINK_KEYS = frozenset({"compensates_mutation_id", "compensation_reason"})
LABEL_KEYS = ("campaign_id", "id", "name", "key")  # what names an object in a list
PATH_HEAD, PATH_TAIL = 4, 3  # values shown around "n more" on a long path


class LoggedChange(Protocol):
    """What the replay needs of a Mutation Log entry."""

    @property
    def mutation_id(self) -> str: ...

    @property
    def number(self) -> int: ...

    @property
    def step_id(self) -> str: ...

    @property
    def platform(self) -> str: ...

    @property
    def mutation_type(self) -> str: ...

    @property
    def status(self) -> str: ...

    @property
    def target(self) -> dict[str, Any]: ...

    @property
    def payload(self) -> dict[str, Any]: ...

    @property
    def result(self) -> Any: ...


@dataclass(frozen=True)
class PathStep:
    """A field's value after one logged change."""

    value: str
    raw: Any
    number: int
    step_id: str
    mutation_id: str


@dataclass
class FieldRow:
    name: str
    label: str
    before: str
    after: str
    before_raw: Any
    after_raw: Any
    path: list[PathStep] = field(default_factory=list)
    drift: bool = False
    delta: str = ""
    implied: str = ""  # what the log implies, when the state read says otherwise

    @property
    def changed(self) -> bool:
        return self.before_raw != self.after_raw or any(
            step.raw != self.before_raw for step in self.path
        )

    @property
    def shown_path(self) -> list[PathStep | None]:
        """Return the path to show: a long one keeps its ends, None marks the cut."""
        if len(self.path) <= PATH_HEAD + PATH_TAIL + 1:
            return list(self.path)
        return [*self.path[:PATH_HEAD], None, *self.path[-PATH_TAIL:]]

    @property
    def hidden_steps(self) -> int:
        return max(len(self.path) - PATH_HEAD - PATH_TAIL, 0) if self.path else 0


@dataclass
class ObjectComparison:
    platform: str
    label: str
    fields: list[FieldRow]
    before_exists: bool = True
    after_exists: bool = True
    note: str = ""  # why values after some change are not known

    @property
    def changed(self) -> bool:
        return self.before_exists != self.after_exists or any(f.changed for f in self.fields)

    @property
    def key(self) -> str:
        return f"{self.platform}:{self.label}"


@dataclass
class StateComparison:
    """What the State section shows for one run."""

    status: str
    before_hash: str | None
    after_hash: str | None
    live: bool = False  # "now" is a read made for this page, not the run's end
    kept: bool = False  # the snapshots were kept (runs before they were are hashes only)
    objects: list[ObjectComparison] = field(default_factory=list)
    read_error: str = ""  # the current state could not be read
    proof_broken: list[str] = field(default_factory=list)  # a snapshot not matching its hash

    @property
    def after_label(self) -> str:
        return "Now" if self.live else "After"

    @property
    def verdict(self) -> str | None:
        """Return net_zero, drift, changed or unchanged; None while there is nothing to say."""
        if not self.before_hash or not self.after_hash:
            return None
        same = self.before_hash == self.after_hash and not self.proof_broken
        if self.live:
            return "unchanged" if same else "changed"
        if self.status in NET_ZERO_EXPECTED:
            return "net_zero" if same else "drift"
        return "unchanged" if same else "changed"

    @property
    def differences(self) -> list[str]:
        """Return one sentence per field that differs between before and after."""
        sentences = []
        for obj in self.objects:
            if obj.before_exists != obj.after_exists:
                now = "exists" if obj.after_exists else "is gone"
                sentences.append(f"{obj.label} ({obj.platform}) {now}; before the run it did not")
                continue
            for row in obj.fields:
                if row.before_raw != row.after_raw:
                    sentences.append(
                        f"{row.label} of {obj.label} ({obj.platform}) is {row.after}, "
                        f"was {row.before}" + (f" ({row.delta})" if row.delta else "")
                    )
        return sentences

    @property
    def changed_objects(self) -> int:
        return sum(obj.changed for obj in self.objects)


def compare(
    *,
    status: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    before_hash: str | None,
    after_hash: str | None,
    scope: dict[str, Any],
    changes: Sequence[LoggedChange],
    currency: str = "USD",
    live: bool = False,
    read_error: str = "",
) -> StateComparison:
    """Compare a run's scope before and after it (or now, ``live``), replaying the applied
    ``changes`` in order to show each field's values in between."""
    comparison = StateComparison(
        status=status,
        before_hash=before_hash,
        after_hash=after_hash,
        live=live,
        kept=before is not None,
        read_error=read_error,
    )
    for name, snapshot, digest in (("before", before, before_hash), ("after", after, after_hash)):
        if snapshot is not None and digest and state_hash(snapshot) != digest:
            comparison.proof_broken.append(name)
    if before is None:
        return comparison
    paths, notes, implied = _replay(before, scope, changes, currency)
    before_objects = _objects(before, scope)
    after_objects = _objects(after, scope) if after is not None else {}
    for (platform, label), old in before_objects.items():
        new = after_objects.get((platform, label), old) if after is not None else old
        comparison.objects.append(
            _object(
                platform,
                label,
                old,
                new,
                paths.get((platform, label), {}),
                implied.get((platform, label), {}) if after is not None else {},
                currency=currency,
                drift=comparison.verdict == "drift",
                note=notes.get(platform, ""),
            )
        )
    for (platform, label), new in after_objects.items():
        if (platform, label) not in before_objects:
            comparison.objects.append(
                _object(platform, label, None, new, {}, {}, currency=currency, drift=False)
            )
    comparison.objects.sort(key=lambda obj: not obj.changed)  # what moved comes first
    return comparison


# ---- objects and fields ------------------------------------------------------------------

ObjectKey = tuple[str, str]  # platform, label


def _objects(snapshot: dict[str, Any], scope: dict[str, Any]) -> dict[ObjectKey, Any]:
    """Return each platform object of a snapshot by (platform, label): the items of a
    platform's list (a sandbox's campaigns), or a platform's one object (None: absent)."""
    found: dict[ObjectKey, Any] = {}
    for platform in sorted(snapshot):
        state = snapshot[platform]
        if isinstance(state, list):
            for n, item in enumerate(state, start=1):
                found[(platform, _item_label(item, n))] = item
        else:
            found[(platform, _target_label(scope.get(platform)))] = state
    return found


def _item_label(item: Any, n: int) -> str:
    if isinstance(item, dict):
        for key in LABEL_KEYS:
            if isinstance(item.get(key), str | int):
                return str(item[key])
    return f"#{n}"


def _target_label(target: Any) -> str:
    """Name a platform's one object by its scope target: ``group=payments-oncall``."""
    if not isinstance(target, dict) or not target:
        return "state"
    request = target.get("request")
    if len(target) == 1 and isinstance(request, dict) and "path" in request:
        return str(request["path"])
    return ", ".join(f"{k}={v}" for k, v in sorted(target.items()))


def _fields(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    return {} if value is None else {"value": value}


def _object(
    platform: str,
    label: str,
    old: Any,
    new: Any,
    paths: dict[str, list[PathStep]],
    implied: dict[str, Any],
    *,
    currency: str,
    drift: bool,
    note: str = "",
) -> ObjectComparison:
    before, after = _fields(old), _fields(new)
    rows = []
    for name in list(dict.fromkeys([*before, *after])):
        b, a = before.get(name), after.get(name)
        row = FieldRow(
            name=name,
            label=field_label(name),
            before=field_value(name, b, currency),
            after=field_value(name, a, currency),
            before_raw=b,
            after_raw=a,
            path=paths.get(name, []),
            drift=drift and b != a,
            delta=field_delta(name, b, a, currency),
        )
        if name in implied and implied[name] != a:
            row.implied = field_value(name, implied[name], currency)
        rows.append(row)
    exists = {"before_exists": old is not None, "after_exists": new is not None}
    return ObjectComparison(platform, label, rows, note=note, **exists)


def field_label(name: str) -> str:
    """Return a field's name in words: ``daily_budget_micros`` -> daily budget."""
    return name.removesuffix("_micros").replace("_", " ")


def field_value(name: str, value: Any, currency: str = "USD") -> str:
    """Return a field's value as a person reads it: money for ``*_micros``."""
    if value is None:
        return "\u2014"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if name.endswith("_micros") and isinstance(value, int):
        return money(Decimal(value) / 1_000_000, currency)
    if isinstance(value, list):
        return ", ".join(field_value("", item, currency) for item in value) or "none"
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, separators=(", ", ": "))
    return str(value)


def money(amount: Decimal, currency: str, *, signed: bool = False) -> str:
    sign = (MINUS if amount < 0 else "+") if signed else (MINUS if amount < 0 else "")
    text = f"{abs(amount):,.2f}"
    return f"{sign}${text}" if currency == "USD" else f"{sign}{text} {currency}"


def field_delta(name: str, before: Any, after: Any, currency: str = "USD") -> str:
    """Return the signed difference of a number that changed (a minus sign and $800.00),
    else ""."""
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (before, after))
    if not numbers or before == after:
        return ""
    if name.endswith("_micros") and isinstance(before, int) and isinstance(after, int):
        return money(Decimal(after - before) / 1_000_000, currency, signed=True)
    difference = after - before
    return f"{MINUS if difference < 0 else '+'}{abs(difference):g}"


# ---- replaying the log -------------------------------------------------------------------


def _replay(
    before: dict[str, Any], scope: dict[str, Any], changes: Sequence[LoggedChange], currency: str
) -> tuple[dict[ObjectKey, dict[str, list[PathStep]]], dict[str, str], dict[ObjectKey, Any]]:
    """Apply the applied changes to the before-state in order; return each field's values
    after each change that moved it, a note per platform whose changes the log does not
    explain, and the fields the log implies at the end."""
    state = copy.deepcopy(before)
    paths: dict[ObjectKey, dict[str, list[PathStep]]] = {}
    notes: dict[str, str] = {}
    for change in changes:
        platform = change.platform
        if change.status not in APPLIED or platform not in state or platform in notes:
            continue
        old = _objects({platform: state[platform]}, scope)
        new_state = _apply(state[platform], change)
        if new_state is _UNKNOWN:
            notes[platform] = (
                f"The values after #{change.number} {change.step_id} are not known from the "
                "Mutation Log; the after column is the state read."
            )
            continue
        state[platform] = new_state
        for key, item in _objects({platform: new_state}, scope).items():
            previous = _fields(old.get(key))
            for name, value in _fields(item).items():
                if previous.get(name) != value:
                    paths.setdefault(key, {}).setdefault(name, []).append(
                        PathStep(
                            field_value(name, value, currency),
                            value,
                            change.number,
                            change.step_id,
                            change.mutation_id,
                        )
                    )
    implied = {
        key: _fields(item) for key, item in _objects(state, scope).items() if key[0] not in notes
    }
    return paths, notes, implied


_UNKNOWN = object()


def _apply(state: Any, change: LoggedChange) -> Any:
    """Return a platform's state after one change, or _UNKNOWN when the log cannot say."""
    payload = {k: v for k, v in (change.payload or {}).items() if k not in LINK_KEYS}
    if isinstance(state, list):
        return _apply_to_items(state, change.target or {}, payload)
    result = change.result
    if isinstance(result, dict) and "object" in result:  # the object after it, as answered
        return copy.deepcopy(result["object"])
    current = dict(state) if isinstance(state, dict) else {}
    match change.mutation_type:
        case "create" | "put":
            return payload
        case "delete":
            return None
        case "set":
            return {**current, **payload}
        case "increment" if all(isinstance(v, int | float) for v in payload.values()):
            return {**current, **{k: current.get(k, 0) + v for k, v in payload.items()}}
        case "add" | "remove":
            return _add_or_remove(current, payload, adding=change.mutation_type == "add")
    return _UNKNOWN


def _apply_to_items(items: list[Any], target: dict[str, Any], payload: dict[str, Any]) -> Any:
    """Apply a budget delta or a status to the items a target names (the sandbox's way)."""
    if "daily_budget_delta_micros" in payload:
        name, delta = "daily_budget_micros", int(payload["daily_budget_delta_micros"])
    elif "status" in payload:
        name, delta = "status", None
    else:
        return _UNKNOWN
    changed = []
    for item in items:
        if isinstance(item, dict) and all(item.get(k) == v for k, v in target.items() if k in item):
            item = dict(item)
            item[name] = item.get(name, 0) + delta if delta is not None else payload["status"]
        changed.append(item)
    return changed


def _add_or_remove(current: dict[str, Any], payload: dict[str, Any], *, adding: bool) -> Any:
    after = dict(current)
    for name, value in payload.items():
        values = list(after.get(name) or [])
        if adding:
            values.append(value)
        elif value in values:
            values.remove(value)
        after[name] = values
    return after
