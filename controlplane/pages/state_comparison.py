"""The state comparison: a run's scope before and after it, object by object, field by
field, with the values in between replayed from its Mutation Log entries.

The hashes prove that the state came back; these values explain what it was. A snapshot is
what ``mutations.hashing.snapshot_scopes`` returned, kept on the run (``before_state``,
``after_state``) beside the hash computed from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from controlplane.pages.state_replay import LoggedChange, PathStep, replay
from controlplane.pages.state_values import (
    field_delta,
    field_label,
    field_value,
    fields_of,
    objects_of,
)
from mutations.hashing import state_hash
from runs.models import RunStatus

# Statuses whose run had to leave the state as it found it: a rollback ran, or nothing applied.
NET_ZERO_EXPECTED = frozenset(
    {RunStatus.COMPENSATED, RunStatus.COMPENSATION_FAILED, RunStatus.FAILED}
)
PATH_HEAD, PATH_TAIL = 4, 3  # values shown around "n more" on a long path
NOT_READ = "not read"


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
    def changedobjects_of(self) -> int:
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
    paths, notes, implied = replay(before, scope, changes, currency)
    before_objects = objects_of(before, scope)
    after_objects = objects_of(after, scope) if after is not None else {}
    for (platform, label), old in before_objects.items():
        # Gone from the state after (a list without it) reads as absent.
        new = after_objects.get((platform, label)) if after is not None else old
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
                known=after is not None,
            )
        )
    for (platform, label), new in after_objects.items():
        if (platform, label) not in before_objects:
            comparison.objects.append(
                _object(platform, label, None, new, {}, {}, currency=currency, drift=False)
            )
    comparison.objects.sort(key=lambda obj: not obj.changed)  # what moved comes first
    return comparison


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
    known: bool = True,
) -> ObjectComparison:
    """Compare one object field by field; ``known`` False: its state after (or now) was
    not read, and its values before stand in, shown as not read."""
    before, after = fields_of(old), fields_of(new)
    rows = []
    for name in list(dict.fromkeys([*before, *after])):
        b, a = before.get(name), after.get(name)
        row = FieldRow(
            name=name,
            label=field_label(name),
            before=field_value(name, b, currency),
            after=field_value(name, a, currency) if known else NOT_READ,
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
