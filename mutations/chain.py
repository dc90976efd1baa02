"""The Mutation Log as a hash chain per organization, and its verification.

Each entry stores ``prev_hash`` (the entry before it) and ``entry_hash`` =
sha256(prev_hash + canonical JSON of the entry). Appending locks the org's LogHead row, so
concurrent runners append one at a time. A signed checkpoint (sequence and hash, HMAC with
``BACKSTOP_CHECKPOINT_KEY``) kept elsewhere catches a log whose tail was cut or rewritten.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from mutations.models import LogHead, Mutation
from mutations.rows import for_update, table, update_rows

GENESIS = "0" * 64
CHUNK = 2000


def entry_digest(mutation: Mutation) -> str:
    """Return the hash an entry must carry, given its content and its predecessor's hash."""
    content = {
        "sequence": mutation.sequence,
        "mutation_id": mutation.mutation_id,
        "org_id": mutation.org_id,
        "decision_id": mutation.decision_id,
        "run_id": mutation.run_id,
        "step_id": mutation.step_id,
        "idempotency_key": mutation.idempotency_key,
        "platform": mutation.platform,
        "mutation_type": mutation.mutation_type,
        "target": mutation.target,
        "payload": mutation.payload,
        "result": mutation.result,
        "status": mutation.status,
        "actor_type": mutation.actor_type,
        "compensates_id": mutation.compensates_id,
        "created_at": mutation.created_at.isoformat(),
        "error_message": mutation.error_message,
    }
    if mutation.receipt:  # entries from before receipts were recorded hash as they did
        content["receipt"] = mutation.receipt
    # Every field counts here (state hashes leave volatile ones out; the chain must not).
    body = json.dumps(content, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(mutation.prev_hash.encode() + body).hexdigest()


def link(*mutations: Mutation) -> None:
    """Give unsaved mutations of one org their places in its chain, in the order given.

    Call inside the transaction that inserts them: the head row stays locked until that
    transaction ends, so concurrent writers append one after the other.
    """
    org_id = mutations[0].org_id
    sequence, last_hash = _locked_head(org_id)
    for mutation in mutations:
        sequence += 1
        mutation.sequence, mutation.prev_hash = sequence, last_hash or GENESIS
        mutation.entry_hash = last_hash = entry_digest(mutation)
    update_rows(LogHead, [(org_id, {"sequence": sequence, "hash": last_hash})])


def _locked_head(org_id: str) -> tuple[int, str]:
    """Lock the org's head row (created on its first entry); return its sequence and hash."""
    head = f"SELECT sequence, hash FROM {table(LogHead)} WHERE org_id = %s{for_update()}"
    for _ in range(2):
        with connection.cursor() as cursor:
            cursor.execute(head, [org_id])
            row = cursor.fetchone()
        if row is not None:
            return int(row[0]), str(row[1])
        try:
            with transaction.atomic():
                LogHead.objects.create(org_id=org_id)
        except IntegrityError:
            pass  # another runner created it first
    raise LogHead.DoesNotExist(org_id)


@dataclass(frozen=True)
class Verification:
    org_id: str
    checked: int
    last_sequence: int
    last_hash: str
    broken_at: int | None = None
    mutation_id: str | None = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.broken_at is None


def verify(org_id: str, *, since: int = 0, since_hash: str = "") -> Verification:
    """Recompute the chain after entry ``since`` and name the first broken entry."""
    expected_sequence, expected_prev = since + 1, since_hash or GENESIS
    checked = 0
    for entry in _entries(org_id, since):
        if entry.sequence != expected_sequence:
            return Verification(
                org_id,
                checked,
                expected_sequence - 1,
                expected_prev,
                expected_sequence,
                None,
                f"entry {expected_sequence} is missing (next is {entry.sequence})",
            )
        if entry.prev_hash != expected_prev:
            return Verification(
                org_id,
                checked,
                expected_sequence - 1,
                expected_prev,
                entry.sequence,
                entry.mutation_id,
                "it does not follow the entry before it (prev_hash differs)",
            )
        if entry_digest(entry) != entry.entry_hash:
            return Verification(
                org_id,
                checked,
                expected_sequence - 1,
                expected_prev,
                entry.sequence,
                entry.mutation_id,
                "its content was changed after it was written",
            )
        checked += 1
        expected_sequence, expected_prev = entry.sequence + 1, entry.entry_hash
    return Verification(org_id, checked, expected_sequence - 1, expected_prev)


def _entries(org_id: str, since: int) -> Iterable[Mutation]:
    position = since
    while True:
        chunk = list(
            Mutation.objects.filter(org_id=org_id, sequence__gt=position).order_by("sequence")[
                :CHUNK
            ]
        )
        yield from chunk
        if len(chunk) < CHUNK:
            return
        position = chunk[-1].sequence


def record_verification(result: Verification) -> None:
    LogHead.objects.filter(org_id=result.org_id).update(
        verified_sequence=result.last_sequence,
        verified_hash=result.last_hash,
        verified_at=timezone.now(),
        broken_at=result.broken_at,
        broken_reason=(
            f"entry {result.broken_at} ({result.mutation_id or 'missing'}): {result.reason}"
            if result.broken_at
            else ""
        ),
    )


def verify_recent() -> int:
    """Verify what each org appended since its last verification; return entries checked."""
    checked = 0
    for head in LogHead.objects.filter(broken_at__isnull=True):
        if head.sequence == head.verified_sequence:
            continue
        result = verify(head.org_id, since=head.verified_sequence, since_hash=head.verified_hash)
        record_verification(result)
        checked += result.checked
    return checked


# ---- checkpoints ------------------------------------------------------------------------------


def checkpoint_key() -> bytes:
    key = os.environ.get("BACKSTOP_CHECKPOINT_KEY", "")
    if not key:
        raise ValueError("Set BACKSTOP_CHECKPOINT_KEY in the environment to sign checkpoints.")
    return key.encode()


def _signature(org_id: str, sequence: int, digest: str) -> str:
    return hmac.new(
        checkpoint_key(), f"{org_id}:{sequence}:{digest}".encode(), hashlib.sha256
    ).hexdigest()


def make_checkpoint(org_id: str) -> dict[str, Any]:
    """Return a signed statement of the chain's newest entry, to keep somewhere else."""
    head = LogHead.objects.filter(org_id=org_id).first()
    sequence, digest = (head.sequence, head.hash) if head else (0, GENESIS)
    return {
        "org_id": org_id,
        "sequence": sequence,
        "hash": digest,
        "signed_at": timezone.now().isoformat(),
        "signature": _signature(org_id, sequence, digest),
    }


def verify_checkpoint(checkpoint: dict[str, Any]) -> Verification:
    """Verify the chain up to a checkpoint and that the checkpoint's entry is still there."""
    org_id, sequence, digest = checkpoint["org_id"], int(checkpoint["sequence"]), checkpoint["hash"]
    if not hmac.compare_digest(
        _signature(org_id, sequence, digest), checkpoint.get("signature", "")
    ):
        return Verification(
            org_id, 0, 0, GENESIS, 0, None, "the checkpoint's signature is not valid"
        )
    result = verify(org_id)
    if not result.ok:
        return result
    if result.last_sequence < sequence:
        return Verification(
            org_id,
            result.checked,
            result.last_sequence,
            result.last_hash,
            result.last_sequence + 1,
            None,
            f"the log ends at entry {result.last_sequence} but the checkpoint "
            f"vouches for entry {sequence}: its tail was cut",
        )
    entry = Mutation.objects.filter(org_id=org_id, sequence=sequence).first()
    if sequence and (entry is None or entry.entry_hash != digest):
        return Verification(
            org_id,
            result.checked,
            result.last_sequence,
            result.last_hash,
            sequence,
            entry.mutation_id if entry else None,
            "the entry differs from the one the checkpoint vouches for",
        )
    return result
