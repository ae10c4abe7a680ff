from django.conf import settings
from django.db import models


class AuditEntry(models.Model):
    """One sensitive action: who did what to which object, from where. Append-only."""

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Kept as text too, so the entry still names the actor after the user is deleted.
    actor_label = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=60)
    target_type = models.CharField(max_length=100, blank=True)
    target_id = models.CharField(max_length=100, blank=True)
    target_label = models.CharField(max_length=200, blank=True)
    detail = models.JSONField(default=dict, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-at", "-pk"]
        verbose_name = "audit entry"
        verbose_name_plural = "audit entries"
        indexes = [
            # The audit log page: newest first, optionally filtered by action.
            models.Index(fields=["action", "-at"], name="auditentry_action_at"),
        ]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.actor_label or 'system'} {self.action} {self.target_label}"


class ApiToken(models.Model):
    """A secret that lets a script call the API as its user ("Authorization: Token KEY").

    Only the SHA-256 of the key is stored (as for write keys): keys are 32 random bytes, so a
    slow password hash would add nothing but latency to every API request. The clear key is
    shown once, when the token is created.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, blank=True, help_text="What uses the token.")
    prefix = models.CharField(max_length=12, help_text="The first characters, to recognise a token.")
    key_hash = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.user} · {self.prefix}…"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class UserPreference(models.Model):
    """A signed-in user's own settings. Only the time zone for now (recsite.middleware)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="preference"
    )
    time_zone = models.CharField(max_length=64, blank=True, help_text="IANA name; empty for the site's.")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.user_id}: {self.time_zone or 'site time zone'}"


# --- Business impact (recsite/impact.py, docs/impact.md) -------------------------------------


class RecommendationImpression(models.Model):
    """One result served by the recommendation API: what a click's ``recommendation_id`` points
    back to. Plain ids rather than foreign keys: written on the serving path, read in bulk."""

    recommendation_id = models.CharField(max_length=64, unique=True)
    served_at = models.DateTimeField()
    placement = models.CharField(max_length=100, blank=True, help_text="Empty when none was named.")
    recommender = models.CharField(max_length=100)
    item_id = models.BigIntegerField()
    rank = models.PositiveSmallIntegerField(default=0)

    class Meta:
        indexes = [
            # Impressions per day (the refresh) and the deletion of old rows.
            models.Index(fields=["served_at"], name="impression_served_at_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.recommendation_id} ({self.placement or '-'} / {self.recommender})"


class ImpactDaily(models.Model):
    """One daily figure of the business-impact report, rebuilt by ``impact_refresh``.

    ``metric`` is ``impressions``, ``clicks``, an engagement type (all such events of the day,
    on rows with empty placement and recommender) or ``<type>:attributed`` (those that followed
    a recommendation click of that placement and recommender). Days are UTC days.
    """

    day = models.DateField()
    placement = models.CharField(max_length=100, blank=True)
    recommender = models.CharField(max_length=100, blank=True)
    metric = models.CharField(max_length=40)
    count = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["day", "placement", "recommender", "metric"]
        constraints = [
            # Also the index of every read: a range of days (leading column).
            models.UniqueConstraint(
                fields=["day", "placement", "recommender", "metric"], name="impactdaily_unique_cell"
            ),
        ]
        verbose_name_plural = "impact daily figures"

    def __str__(self) -> str:
        return f"{self.day} {self.placement or '-'} {self.recommender or '-'} {self.metric}={self.count}"


class ImpactRefresh(models.Model):
    """One recomputation of the daily impact figures: which days, how long, how it ended."""

    class Status(models.TextChoices):
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    status = models.CharField(max_length=20, choices=Status.choices, default=Status.RUNNING)
    day_from = models.DateField()
    day_to = models.DateField()
    rows = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at", "-pk"]
        constraints = [
            # Two refreshes never rewrite the same days at once.
            models.UniqueConstraint(
                fields=["status"], condition=models.Q(status="running"), name="impactrefresh_one_running"
            ),
        ]

    def __str__(self) -> str:
        return f"impact refresh {self.day_from}..{self.day_to} ({self.status})"


# --- Transactional outbox (recsite/outbox.py, docs/operations.md) ----------------------------


class OutboxTask(models.Model):
    """A task message written in the transaction of the work it belongs to. Sent to the broker
    after commit and deleted once sent; a row that stays was not sent (the broker could not be
    reached), and the beat task ``outbox-resend`` sends it again."""

    task = models.CharField(max_length=200, help_text="The Celery task's registered name.")
    args = models.JSONField(default=list, blank=True)
    kwargs = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    attempts = models.PositiveIntegerField(default=0, help_text="Failed sends so far.")
    last_error = models.TextField(blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "pk"]
        indexes = [
            # The resend task's scan (rows older than a cut-off, oldest first) and the Jobs
            # page's backlog line (count and oldest).
            models.Index(fields=["created_at"], name="outboxtask_created_at"),
        ]

    def __str__(self) -> str:
        return f"{self.task}{tuple(self.args)} (created {self.created_at:%Y-%m-%d %H:%M:%S})"
