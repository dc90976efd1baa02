"""Forms: the decision list's filters, validated like any other input."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime

from django import forms
from django.utils.dateparse import parse_datetime

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


class Cursor:
    """A keyset position in the decision list: the last row's (received_at, id)."""

    @staticmethod
    def encode(received_at: datetime, decision_id: str) -> str:
        raw = f"{received_at.isoformat()}|{decision_id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @staticmethod
    def decode(value: str) -> tuple[datetime, str]:
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
            moment, decision_id = raw.split("|", 1)
            parsed = parse_datetime(moment)
        except (binascii.Error, UnicodeDecodeError, ValueError):
            parsed = None
        if parsed is None:
            raise forms.ValidationError("Not a page cursor from this list; start from page one.")
        return parsed, decision_id


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

    def clean(self) -> dict[str, object]:
        cleaned = super().clean() or {}
        start, end = cleaned.get("received_from"), cleaned.get("received_to")
        if start and end and start > end:
            self.add_error("received_to", "Must be on or after the From date.")
        return cleaned
