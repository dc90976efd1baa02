"""Forms: the decision list's filters, validated like any other input."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from django import forms

from controlplane.templatetags.backstop import label
from mutations.connectors import known_platforms
from runs.models import RunStatus
from runs.workflows import decision_types

DECISION_STATES = [
    ("", "any status"),
    *[(s.value, label(s.value)) for s in RunStatus],
    ("denied", "Denied"),
]
# Drills fail on purpose: their red badges would drown the real runs, so the list hides
# them unless asked.
DRILLS_DEFAULT = "exclude"
DRILL_CHOICES = [
    ("exclude", "real runs only"),
    ("include", "drills and real runs"),
    ("only", "drills only"),
]


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Cursor:
    """A keyset position in the decision list: the last row's (received_at, id), written
    ``<microseconds since 1970>_<dec_ id>`` so that its pattern (``PATTERN``) says
    exactly which values are cursors."""

    PATTERN = r"^[0-9]{1,17}_dec_[0-9A-Z]{26}$"

    @staticmethod
    def encode(received_at: datetime, decision_id: str) -> str:
        micros = (received_at - EPOCH) // timedelta(microseconds=1)
        return f"{micros}_{decision_id}"

    @staticmethod
    def decode(value: str) -> tuple[datetime, str]:
        if not re.fullmatch(Cursor.PATTERN, value):
            raise forms.ValidationError("Not a page cursor from this list; start from page one.")
        micros, decision_id = value.split("_", 1)
        return EPOCH + timedelta(microseconds=int(micros)), decision_id


class DecisionFilterForm(forms.Form):
    """The list's filters. Errors are keyed by field name (the API's ``fields``); pages
    show each field's label instead."""

    q = forms.CharField(required=False, max_length=200, label="Search")
    status = forms.ChoiceField(required=False, choices=DECISION_STATES, label="Status")
    type = forms.ChoiceField(required=False, label="Type")
    platform = forms.ChoiceField(required=False, label="Platform")
    received_from = forms.DateField(required=False, label="From")
    received_to = forms.DateField(required=False, label="To")
    drills = forms.ChoiceField(required=False, choices=DRILL_CHOICES, label="Drills")
    after = forms.CharField(required=False, widget=forms.HiddenInput, label="Page")

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.fields["type"].choices = [("", "any type"), *[(t, t) for t in decision_types()]]  # type: ignore[attr-defined]
        self.fields["platform"].choices = [  # type: ignore[attr-defined]
            ("", "any platform"),
            *[(p, p) for p in known_platforms()],
        ]

    def clean_drills(self) -> str:
        return self.cleaned_data.get("drills") or DRILLS_DEFAULT

    @property
    def narrowed(self) -> bool:
        """Return whether a person chose any filter (the drills default aside)."""
        data = self.cleaned_data if self.is_bound and not self.errors else {}
        return any(
            value and not (name == "drills" and value == DRILLS_DEFAULT)
            for name, value in data.items()
            if name != "after"
        )

    def labelled_errors(self) -> list[tuple[str, str, str]]:
        """Return each error with the label of its field, as a person knows it:
        (field id, label, message); form-wide errors have neither."""
        found = []
        for name, errors in self.errors.items():
            field = self.fields.get(name)
            for error in errors:
                if field is None:
                    found.append(("", "", str(error)))
                else:
                    bound = self[name]
                    anchor = "" if bound.is_hidden else str(bound.auto_id)
                    found.append((anchor, str(field.label), str(error)))
        return found

    def clean_after(self) -> tuple[datetime, str] | None:
        value = self.cleaned_data.get("after")
        return Cursor.decode(value) if value else None
