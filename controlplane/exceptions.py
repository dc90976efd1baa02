class DecisionConflict(Exception):
    """A decision with this id was already received with a different payload."""

    def __init__(self, decision_id: str) -> None:
        super().__init__(
            f"Decision {decision_id} was already received with a different payload. "
            "Decisions are immutable: submit the change under a new id."
        )
        self.decision_id = decision_id


class NoOrganization(Exception):
    """The user belongs to no organization, so there is nothing to show or change."""
