from __future__ import annotations

from django.conf import settings
from django.db import models
from django.urls import reverse


class Experiment(models.Model):
    """An A/B (or multi-variant) test. Variants carry weights and a JSON payload."""

    class Status(models.TextChoices):
        DRAFT = "draft"
        RUNNING = "running"
        PAUSED = "paused"
        STOPPED = "stopped"
        CONCLUDED = "concluded"

    key = models.SlugField(max_length=100, unique=True, help_text="Stable key used by SDKs and the API.")
    name = models.CharField(max_length=200)
    hypothesis = models.TextField(blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.DRAFT)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    traffic_percent = models.PositiveSmallIntegerField(default=100)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(traffic_percent__gte=0, traffic_percent__lte=100),
                name="experiment_traffic_0_100",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("experiments:experiment_detail", args=[self.key])


class Variant(models.Model):
    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="variants")
    key = models.SlugField(max_length=100)
    name = models.CharField(max_length=200)
    weight = models.FloatField(default=0.5)
    payload = models.JSONField(default=dict, blank=True)
    position = models.PositiveSmallIntegerField(default=0, help_text="0 is the control.")

    class Meta:
        ordering = ["experiment", "position", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["experiment", "key"], name="variant_unique_key"),
            models.CheckConstraint(
                condition=models.Q(weight__gte=0, weight__lte=1), name="variant_weight_0_1"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.experiment.key}:{self.key}"
