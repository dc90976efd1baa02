"""Chain the Mutation Log per organization; rows written before this get their links."""

import hashlib
import json

import django.db.models.deletion
from django.db import migrations, models

GENESIS = "0" * 64
TRIGGER = "mutations_mutation_no_update_delete"


def _digest(mutation, prev_hash):
    # The definition of mutations.chain.entry_digest when this migration was written.
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
    body = json.dumps(content, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(prev_hash.encode() + body).hexdigest()


def link_existing(apps, schema_editor):
    Mutation = apps.get_model("mutations", "Mutation")
    LogHead = apps.get_model("mutations", "LogHead")
    postgresql = schema_editor.connection.vendor == "postgresql"
    if postgresql:  # the rows are append-only; this one-time backfill is the exception
        schema_editor.execute(f"ALTER TABLE mutations_mutation DISABLE TRIGGER {TRIGGER}")
    for org_id in Mutation.objects.order_by().values_list("org_id", flat=True).distinct():
        prev = GENESIS
        rows = Mutation.objects.filter(org_id=org_id).order_by("created_at", "mutation_id")
        for sequence, mutation in enumerate(rows, start=1):
            mutation.sequence, mutation.prev_hash = sequence, prev
            mutation.entry_hash = prev = _digest(mutation, prev)
            Mutation.objects.filter(pk=mutation.pk).update(
                sequence=sequence, prev_hash=mutation.prev_hash, entry_hash=mutation.entry_hash
            )
        LogHead.objects.create(org_id=org_id, sequence=rows.count(), hash=prev)
    if postgresql:
        schema_editor.execute(f"ALTER TABLE mutations_mutation ENABLE TRIGGER {TRIGGER}")


class Migration(migrations.Migration):

    dependencies = [
        ('controlplane', '0003_drills'),
        ('mutations', '0006_append_only_triggers'),
        ('runs', '0004_approvals'),
    ]

    operations = [
        migrations.CreateModel(
            name='LogHead',
            fields=[
                ('org', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, primary_key=True, serialize=False, to='controlplane.organization')),
                ('sequence', models.BigIntegerField(default=0)),
                ('hash', models.CharField(default='', max_length=64)),
                ('verified_sequence', models.BigIntegerField(default=0)),
                ('verified_hash', models.CharField(default='', max_length=64)),
                ('verified_at', models.DateTimeField(null=True)),
                ('broken_at', models.BigIntegerField(help_text='First entry that failed to verify.', null=True)),
                ('broken_reason', models.TextField(blank=True)),
            ],
        ),
        migrations.AddField(
            model_name='mutation',
            name='entry_hash',
            field=models.CharField(default='', max_length=64),
        ),
        migrations.AddField(
            model_name='mutation',
            name='prev_hash',
            field=models.CharField(default='', max_length=64),
        ),
        migrations.AddField(
            model_name='mutation',
            name='sequence',
            field=models.BigIntegerField(default=0),
        ),
        migrations.RunPython(link_existing, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name='mutation',
            constraint=models.UniqueConstraint(fields=('org', 'sequence'), name='mutation_chain_position'),
        ),
    ]
