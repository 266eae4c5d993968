"""The audit log: who changed what, with before and after."""
from __future__ import annotations

from ...extensions import db
from ...models import AuditEntry, User

SECRET_MARK = "(changed)"


def record(
    action: str,
    actor: User | None = None,
    target_type: str | None = None,
    target_id: object = None,
    before: dict | None = None,
    after: dict | None = None,
    note: str | None = None,
    customer_id: int | None = None,
    actor_label: str | None = None,
) -> AuditEntry:
    """Add an audit entry to the session (committed with the change it describes)."""
    label = actor_label or (actor.email if actor is not None else "system")
    entry = AuditEntry(
        action=action,
        actor_id=actor.id if actor is not None else None,
        actor_label=label,
        target_type=target_type,
        target_id=None if target_id is None else str(target_id),
        before=before,
        after=after,
        note=note,
        customer_id=customer_id,
    )
    db.session.add(entry)
    return entry


def diff(before: dict, after: dict, secret_fields: tuple[str, ...] = ()) -> tuple[dict, dict]:
    """Keep only the fields that changed; secrets appear as '(changed)', never as values."""
    old, new = {}, {}
    for key in sorted(set(before) | set(after)):
        if before.get(key) == after.get(key):
            continue
        if key in secret_fields:
            old[key], new[key] = "", SECRET_MARK
        else:
            old[key], new[key] = before.get(key), after.get(key)
    return old, new
