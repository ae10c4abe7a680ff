"""Drop the single-column indexes of the event and interaction foreign keys.

Each is the leading column of a composite index already (events: (source, message_id),
(profile, timestamp), (item, timestamp); interactions: (profile, item), (item, strength)),
and every index costs each ingested row a B-tree insert. Only the indexes are dropped: a
plain AlterField would also drop and re-validate the foreign keys, scanning the tables.
"""

import django.db.models.deletion
from django.db import migrations, models

COLUMNS = {"event": ["source_id", "profile_id", "item_id"], "interaction": ["profile_id", "item_id"]}


def indexes_drop(apps, schema_editor):
    for model_name, columns in COLUMNS.items():
        model = apps.get_model("personalization", model_name)
        for column in columns:
            for name in schema_editor._constraint_names(model, [column], index=True, unique=False):
                schema_editor.execute(schema_editor._delete_index_sql(model, name))


def indexes_create(apps, schema_editor):
    for model_name, columns in COLUMNS.items():
        model = apps.get_model("personalization", model_name)
        for column in columns:
            field = next(f for f in model._meta.local_fields if f.column == column)
            schema_editor.execute(schema_editor._create_index_sql(model, fields=[field]))


class Migration(migrations.Migration):
    dependencies = [
        ("catalog", "0003_fewer_indexes_for_imports"),
        ("personalization", "0005_segment_webhooks_discovery"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(indexes_drop, indexes_create)],
            state_operations=[
                migrations.AlterField(
                    model_name="event",
                    name="item",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="events",
                        to="catalog.item",
                    ),
                ),
                migrations.AlterField(
                    model_name="event",
                    name="profile",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="events",
                        to="personalization.profile",
                    ),
                ),
                migrations.AlterField(
                    model_name="event",
                    name="source",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="events",
                        to="personalization.source",
                    ),
                ),
                migrations.AlterField(
                    model_name="interaction",
                    name="item",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="interactions",
                        to="catalog.item",
                    ),
                ),
                migrations.AlterField(
                    model_name="interaction",
                    name="profile",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="interactions",
                        to="personalization.profile",
                    ),
                ),
            ],
        ),
    ]
