from django.contrib import admin
from treebeard.admin import TreeAdmin
from treebeard.forms import movenodeform_factory

from .models import Item, ItemTag, Tag


class ItemTagInline(admin.TabularInline):
    model = ItemTag
    extra = 0
    autocomplete_fields = ["tag"]
    readonly_fields = ["created_by", "created_at"]


@admin.register(Item)
class ItemAdmin(admin.ModelAdmin):
    list_display = ["external_id", "title", "kind", "release_date", "active", "updated_at"]
    list_filter = ["active", "kind"]
    search_fields = ["external_id", "title"]
    date_hierarchy = "created_at"
    inlines = [ItemTagInline]


@admin.register(Tag)
class TagAdmin(TreeAdmin):
    form = movenodeform_factory(Tag, exclude=["slug_path"])
    list_display = ["name", "slug_path", "retired"]
    list_filter = ["retired", "depth"]
    search_fields = ["name", "slug_path"]


@admin.register(ItemTag)
class ItemTagAdmin(admin.ModelAdmin):
    list_display = ["item", "tag", "source", "confidence", "created_by", "created_at"]
    list_filter = ["source"]
    search_fields = ["item__title", "item__external_id", "tag__name"]
    raw_id_fields = ["item", "tag"]
    list_select_related = ["item", "tag", "created_by"]
