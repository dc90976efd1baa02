"""State snapshots and their hashes: the proof that a compensated run changed nothing."""

import hashlib
import json
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from mutations.connectors import get_connector, in_database
from mutations.connectors.sandbox import snapshot_platforms

# Fields that change without the state changing (clocks, bookkeeping).
VOLATILE_FIELDS = frozenset({"updated_at", "applied_at", "fetched_at"})


def _strip_volatile(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_volatile(v) for k, v in value.items() if k not in VOLATILE_FIELDS}
    if isinstance(value, list):
        return [_strip_volatile(v) for v in value]
    return value


def canonical_json(value: Any) -> str:
    """Return JSON with sorted keys, no whitespace and volatile fields removed."""
    return json.dumps(_strip_volatile(value), sort_keys=True, separators=(",", ":"))


def state_hash(snapshot: Any) -> str:
    """Return ``h_`` and the first 12 hex digits of the sha256 of the canonical snapshot."""
    return "h_" + hashlib.sha256(canonical_json(snapshot).encode()).hexdigest()[:12]


def reads_in_database(platforms: Iterable[str]) -> bool:
    """True when every platform named keeps its state in Backstop's database."""
    return all(in_database(p) for p in platforms)


def snapshot_scope(*, org_id: str, scope: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Return the state of every platform object in a run's scope, by platform."""
    return snapshot_scopes(org_id=org_id, scopes=[scope])[0]


def snapshot_scopes(
    *, org_id: str, scopes: list[dict[str, dict[str, Any]]]
) -> list[dict[str, Any]]:
    """Return the snapshot of each scope, asking each platform once for all of them."""
    targets: dict[str, list[dict[str, Any]]] = {}
    for scope in scopes:
        for platform, target in scope.items():
            targets.setdefault(platform, []).append(target)

    def read(platform: str) -> list[Any]:
        return get_connector(platform).snapshot_many(org_id=org_id, targets=targets[platform])

    if reads_in_database(targets):
        # The sandbox platforms, read together in the caller's own transaction.
        answers = snapshot_platforms(org_id, targets)
    elif len(targets) > 1:
        # Platforms behind calls are asked side by side.
        with ThreadPoolExecutor(len(targets), thread_name_prefix="backstop-read") as pool:
            answers = dict(zip(targets, pool.map(read, targets), strict=True))
    else:
        answers = {platform: read(platform) for platform in targets}
    found = {platform: iter(answer) for platform, answer in answers.items()}
    return [{platform: next(found[platform]) for platform in sorted(scope)} for scope in scopes]
