"""Deleting rows that high-volume tables reference without a database constraint.

Events and interactions point at profiles and items through foreign keys without a database
constraint (docs/architecture.md, "Profiles without foreign-key constraints"). Ingestion holds
a share lock (``FOR KEY SHARE``) on the profiles and items it writes for; a deletion takes the
row lock first, so a batch in flight commits before the cascade collects what refers to the
row, and the cascade sees (and deletes) its rows.
"""

from __future__ import annotations

from django.db import models, transaction


class LockedDeleteQuerySet(models.QuerySet):
    def delete(self):
        """Lock the rows, then delete them with their cascade."""
        with transaction.atomic(using=self.db):
            list(self.select_for_update().values_list("pk", flat=True))
            return super().delete()


class LockedDeleteMixin:
    """For the model: ``instance.delete()`` locks its row first, like the queryset."""

    def delete(self, using=None, keep_parents=False):
        with transaction.atomic(using=using):
            manager = type(self)._default_manager.using(using)
            list(manager.select_for_update().filter(pk=self.pk).values_list("pk"))
            return super().delete(using=using, keep_parents=keep_parents)
