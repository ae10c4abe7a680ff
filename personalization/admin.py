from django.contrib import admin

from .models import AnonymousId, Event, ModelArtifact, Profile, Recommender, Source, TrainingRun


@admin.register(Source)
class SourceAdmin(admin.ModelAdmin):
    list_display = ["name", "created_at"]
    search_fields = ["name"]


class AnonymousIdInline(admin.TabularInline):
    model = AnonymousId
    extra = 0


@admin.register(Profile)
class ProfileAdmin(admin.ModelAdmin):
    list_display = ["__str__", "external_id", "first_seen", "last_seen"]
    search_fields = ["external_id", "anonymous_ids__anonymous_id"]
    date_hierarchy = "last_seen"
    inlines = [AnonymousIdInline]


@admin.register(AnonymousId)
class AnonymousIdAdmin(admin.ModelAdmin):
    list_display = ["anonymous_id", "profile", "created_at"]
    search_fields = ["anonymous_id", "profile__external_id"]
    raw_id_fields = ["profile"]


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ["timestamp", "name", "type", "profile", "item", "value", "source"]
    list_filter = ["type", "source"]
    search_fields = ["message_id", "name", "profile__external_id", "item__external_id"]
    raw_id_fields = ["profile", "item"]
    list_select_related = ["profile", "item", "source"]
    date_hierarchy = "timestamp"
    show_full_result_count = False


class TrainingRunInline(admin.TabularInline):
    model = TrainingRun
    extra = 0
    fields = ["version", "status", "progress", "created_at", "finished_at"]
    readonly_fields = fields
    show_change_link = True
    can_delete = False


@admin.register(Recommender)
class RecommenderAdmin(admin.ModelAdmin):
    list_display = ["name", "algorithm", "active_run", "retrain_every_hours", "updated_at"]
    list_filter = ["algorithm"]
    search_fields = ["name", "description"]
    raw_id_fields = ["active_run"]
    inlines = [TrainingRunInline]


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    list_display = ["recommender", "version", "status", "progress", "created_at", "finished_at"]
    list_filter = ["status", "recommender"]
    search_fields = ["recommender__name", "error"]
    readonly_fields = ["heartbeat_at", "started_at", "finished_at", "created_at"]
    list_select_related = ["recommender"]


@admin.register(ModelArtifact)
class ModelArtifactAdmin(admin.ModelAdmin):
    list_display = ["run", "format", "size_bytes", "created_at"]
    exclude = ["data"]
    readonly_fields = ["run", "format", "size_bytes", "created_at"]


# --- Behavioural data ------------------------------------------------------------------------
from .models import (  # noqa: E402
    DeclaredPreference,
    DeletionLog,
    ImportCheckpoint,
    Interaction,
    MergeRequest,
    ProfileMerge,
    WriteKey,
)


@admin.register(WriteKey)
class WriteKeyAdmin(admin.ModelAdmin):
    # Keys are created on the Write keys page (the clear key is shown once there).
    list_display = ["prefix", "source", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["source"]
    readonly_fields = ["source", "prefix", "key_hash", "created_by", "created_at", "last_used_at"]

    def has_add_permission(self, request):
        return False


@admin.register(MergeRequest)
class MergeRequestAdmin(admin.ModelAdmin):
    list_display = ["profile", "into", "status", "reason", "created_at"]
    list_filter = ["status"]
    raw_id_fields = ["profile", "into"]


@admin.register(ProfileMerge)
class ProfileMergeAdmin(admin.ModelAdmin):
    list_display = ["merged_profile_id", "survivor", "reason", "created_at"]
    raw_id_fields = ["survivor"]


@admin.register(Interaction)
class InteractionAdmin(admin.ModelAdmin):
    list_display = ["profile", "item", "strength", "count", "last_at"]
    raw_id_fields = ["profile", "item"]
    show_full_result_count = False


@admin.register(DeclaredPreference)
class DeclaredPreferenceAdmin(admin.ModelAdmin):
    list_display = ["profile", "tag", "sentiment", "origin", "created_at"]
    raw_id_fields = ["profile", "tag"]


@admin.register(DeletionLog)
class DeletionLogAdmin(admin.ModelAdmin):
    list_display = ["deleted_at", "id_hash", "deleted_by", "counts"]
    search_fields = ["id_hash"]
    readonly_fields = ["id_hash", "deleted_by", "deleted_at", "counts"]


@admin.register(ImportCheckpoint)
class ImportCheckpointAdmin(admin.ModelAdmin):
    list_display = ["key", "line", "pending", "stored", "updated_at"]
    search_fields = ["key"]


from .models import Segment, SegmentRefresh  # noqa: E402


@admin.register(Segment)
class SegmentAdmin(admin.ModelAdmin):
    list_display = ["name", "key", "kind", "size", "last_refreshed_at", "refresh_every_minutes"]
    list_filter = ["kind"]
    search_fields = ["name", "key"]
    readonly_fields = ["size", "last_refreshed_at", "created_at", "updated_at"]


@admin.register(SegmentRefresh)
class SegmentRefreshAdmin(admin.ModelAdmin):
    list_display = [
        "segment", "status", "trigger", "started_at", "duration_seconds", "size", "entered", "exited",
    ]  # fmt: skip
    list_filter = ["status", "trigger"]
    list_select_related = ["segment"]


from django.db import models  # noqa: E402

from .models import DiscoveryJob, SegmentWebhook, WebhookDelivery  # noqa: E402


@admin.register(SegmentWebhook)
class SegmentWebhookAdmin(admin.ModelAdmin):
    list_display = ["segment", "url", "on_enter", "on_exit", "active", "secret_hint", "created_at"]
    list_filter = ["active"]
    list_select_related = ["segment"]
    # The secret is shown once, on the segment page, when the webhook is created.
    exclude = ["secret"]
    readonly_fields = ["secret_hint", "created_by", "created_at"]
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}

    def has_add_permission(self, request):
        return False  # created on the segment page, which shows the secret once


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = [
        "created_at", "webhook", "event", "part", "status", "attempts", "status_code", "error",
        "last_attempt_at", "next_attempt_at",
    ]  # fmt: skip
    list_filter = ["status", "event"]
    list_select_related = ["webhook"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(DiscoveryJob)
class DiscoveryJobAdmin(admin.ModelAdmin):
    list_display = ["pk", "status", "k", "progress", "message", "created_by", "created_at", "finished_at"]
    list_filter = ["status"]
    exclude = ["result"]

    def has_add_permission(self, request):
        return False
