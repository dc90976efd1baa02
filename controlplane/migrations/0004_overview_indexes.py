"""Indexes for the overview's reads (controlplane/pages/overview_data.py).

Each one lets a count of recent minutes, or a short list, read a narrow index instead of
the org's whole table, so the overview costs the same at any size of history. The ones on
runs and steps are partial: a row enters them when it finishes, so the runner's updates of
rows in flight do not maintain them. They are plain SQL that SQLite and PostgreSQL both
speak. They live here, with the page that reads them, rather than in the runs app's
migrations; they are not declared on the models, so `makemigrations` leaves them alone.
"""

from django.db import migrations

INDEXES = {
    # Decisions per minute by outcome: org, time and outcome, read from the index alone.
    "overview_evaluation_recent": (
        "controlplane_policyevaluation (org_id, evaluated_at, outcome)",
        "",
    ),
    # Runs that ended, per minute, by final state, drills apart: read from the index alone.
    "overview_run_ended": (
        "runs_workflowrun (org_id, finished_at, status, is_drill)",
        "WHERE finished_at IS NOT NULL",
    ),
    # Runs that need a person, newest first.
    "overview_run_compensation_failed": (
        "runs_workflowrun (org_id, finished_at)",
        "WHERE status = 'compensation_failed'",
    ),
    # The most recent forward steps, for the latency percentiles.
    "overview_step_finished": (
        "runs_stepexecution (org_id, finished_at)",
        "WHERE kind = 'forward' AND finished_at IS NOT NULL",
    ),
}


class Migration(migrations.Migration):
    dependencies = [
        ("controlplane", "0003_drills"),
        ("runs", "0005_state_snapshots"),
    ]

    operations = [
        migrations.RunSQL(
            sql=f"CREATE INDEX {name} ON {columns} {condition}".strip(),
            reverse_sql=f"DROP INDEX {name}",
        )
        for name, (columns, condition) in INDEXES.items()
    ]
