"""Hashed API tokens replace rest_framework.authtoken (clear keys).

Existing DRF tokens are carried over: their SHA-256 is stored, so the keys scripts already
use keep working, and the clear copies are deleted. The emptied ``authtoken_token`` table is
left in place (the app is no longer installed); docs/security.md says how to drop it.
"""

import hashlib

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

DRF_TABLE = "authtoken_token"


def drf_tokens_import(apps, schema_editor):
    connection = schema_editor.connection
    if DRF_TABLE not in connection.introspection.table_names():
        return
    ApiToken = apps.get_model("recsite", "ApiToken")
    with connection.cursor() as cursor:
        cursor.execute(f'SELECT "key", "user_id", "created" FROM {DRF_TABLE}')
        rows = cursor.fetchall()
    for key, user_id, created in rows:
        token = ApiToken.objects.create(
            user_id=user_id,
            name="migrated DRF token",
            prefix=key[:12],
            key_hash=hashlib.sha256(key.encode()).hexdigest(),
        )
        ApiToken.objects.filter(pk=token.pk).update(created_at=created)
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {DRF_TABLE}")


class Migration(migrations.Migration):

    dependencies = [
        ("recsite", "0001_initial"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="ApiToken",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(blank=True, help_text="What uses the token.", max_length=100)),
                (
                    "prefix",
                    models.CharField(help_text="The first characters, to recognise a token.", max_length=12),
                ),
                ("key_hash", models.CharField(max_length=64, unique=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("last_used_at", models.DateTimeField(blank=True, null=True)),
                ("revoked_at", models.DateTimeField(blank=True, null=True)),
                (
                    "created_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "user",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="api_tokens",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={"verbose_name": "API token", "ordering": ["-created_at", "-pk"]},
        ),
        # Reversing keeps the hashes (the clear keys are gone for good).
        migrations.RunPython(drf_tokens_import, migrations.RunPython.noop),
    ]
