"""On PostgreSQL, the database itself refuses to change or remove evidence.

UPDATE and DELETE of a Mutation Log row or a runtime event raise; so does TRUNCATE, unless
the session says `SET backstop.allow_truncate = 'on'` (used to empty test databases).
"""

from django.db import migrations

TABLES = ("mutations_mutation", "mutations_runtimeevent")

CREATE = """
CREATE OR REPLACE FUNCTION backstop_refuse_evidence_change() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' AND current_setting('backstop.allow_truncate', true) = 'on' THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION '%% is append-only: %% refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(CREATE)
    for table in TABLES:
        schema_editor.execute(
            f"CREATE TRIGGER {table}_no_update_delete BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION backstop_refuse_evidence_change()"
        )
        schema_editor.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION backstop_refuse_evidence_change()"
        )


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table in TABLES:
        schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_no_update_delete ON {table}")
        schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
    schema_editor.execute("DROP FUNCTION IF EXISTS backstop_refuse_evidence_change()")


class Migration(migrations.Migration):
    dependencies = [("mutations", "0005_approval_decided_event")]

    operations = [migrations.RunPython(forwards, backwards)]
