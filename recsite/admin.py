from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group

from .models import (
    ApiToken,
    AuditEntry,
    ImpactDaily,
    ImpactRefresh,
    OutboxTask,
    RecommendationImpression,
    UserPreference,
)
from .security import ThrottledAuthenticationForm
from .services import audit_record

# The admin's own login form gets the same failure throttling as the site's.
admin.site.login_form = ThrottledAuthenticationForm


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    list_display = ("at", "actor_label", "action", "target_type", "target_label", "ip")
    list_filter = ("action", "target_type")
    search_fields = ("actor_label", "target_label", "target_id")
    date_hierarchy = "at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class _ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written by the product itself (figures, logs): visible to staff, never edited by hand."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(ApiToken)
class ApiTokenAdmin(_ReadOnlyAdmin):
    # Keys are shown once at creation; revoke from the API tokens page so it is audited.
    list_display = ("prefix", "name", "user", "created_at", "last_used_at", "revoked_at")
    list_filter = ("revoked_at",)
    search_fields = ("name", "prefix", "user__username")

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(RecommendationImpression)
class RecommendationImpressionAdmin(_ReadOnlyAdmin):
    list_display = ("recommendation_id", "served_at", "placement", "recommender", "item_id", "rank")
    list_filter = ("placement", "recommender")
    search_fields = ("recommendation_id",)
    date_hierarchy = "served_at"


@admin.register(ImpactDaily)
class ImpactDailyAdmin(_ReadOnlyAdmin):
    list_display = ("day", "placement", "recommender", "metric", "count")
    list_filter = ("metric", "placement", "recommender")
    date_hierarchy = "day"


@admin.register(ImpactRefresh)
class ImpactRefreshAdmin(_ReadOnlyAdmin):
    list_display = ("started_at", "status", "day_from", "day_to", "rows", "finished_at")
    list_filter = ("status",)


@admin.register(OutboxTask)
class OutboxTaskAdmin(_ReadOnlyAdmin):
    # Messages waiting for the broker (recsite/outbox.py); beat sends them again.
    list_display = ("created_at", "task", "args", "attempts", "last_attempt_at", "last_error")
    list_filter = ("task",)


@admin.register(UserPreference)
class UserPreferenceAdmin(admin.ModelAdmin):
    list_display = ("user", "time_zone", "updated_at")
    search_fields = ("user__username",)


class _AuditedAdmin:
    """Records role and permission changes made through the Django admin in the audit log.

    Group membership and superuser/staff flags are what roles are made of here, so every
    add/change/delete of a user or group is audited with the fields the admin changed.
    """

    def log_addition(self, request, obj, message):
        audit_record(actor=request.user, action=f"{obj._meta.model_name}.create", target=obj)
        return super().log_addition(request, obj, message)

    def log_change(self, request, obj, message):
        parts = message if isinstance(message, list) else []
        fields = sorted({f for part in parts if "changed" in part for f in part["changed"].get("fields", [])})
        audit_record(
            actor=request.user, action=f"{obj._meta.model_name}.change", target=obj, detail={"fields": fields}
        )
        return super().log_change(request, obj, message)

    def log_deletions(self, request, queryset):
        for obj in queryset:
            audit_record(actor=request.user, action=f"{obj._meta.model_name}.delete", target=obj)
        return super().log_deletions(request, queryset)


class AuditedUserAdmin(_AuditedAdmin, UserAdmin):
    pass


class AuditedGroupAdmin(_AuditedAdmin, GroupAdmin):
    pass


user_model = get_user_model()
for model, model_admin in ((user_model, AuditedUserAdmin), (Group, AuditedGroupAdmin)):
    if admin.site.is_registered(model):
        admin.site.unregister(model)
    admin.site.register(model, model_admin)
