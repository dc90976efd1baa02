"""Refusals of access, carrying what a person needs to know to get it."""

from __future__ import annotations

from collections.abc import Sequence

from django.core.exceptions import PermissionDenied


def _either(roles: Sequence[str]) -> str:
    """Return roles as a person says them: "an operator or an admin"."""
    named = [f"{'an' if role[0] in 'aeiou' else 'a'} {role}" for role in roles]
    return named[0] if len(named) == 1 else f"{', '.join(named[:-1])} or {named[-1]}"


class RoleRequired(PermissionDenied):
    """The member's role may not do this. ``roles`` are the roles that may, the least
    powerful first: the one to ask an admin for."""

    def __init__(self, *, to: str, roles: Sequence[str], role: str) -> None:
        self.to = to
        self.roles = tuple(str(r) for r in roles)
        self.role = str(role)
        super().__init__(
            f"Only {self.who} may {to}; your role is {self.role}. "
            f"Ask an admin of the organization for the {self.needed} role."
        )

    @property
    def who(self) -> str:
        """Return the roles that may, as a person says them: "an operator or an admin"."""
        return _either(self.roles)

    @property
    def needed(self) -> str:
        """Return the least powerful role that may do it."""
        return self.roles[0]
