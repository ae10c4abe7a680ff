from django import forms

from . import services
from .models import Tag


class TagField(forms.ModelChoiceField):
    """Tags labelled with their full path ("Genre > Anime"), computed in one query."""

    def __init__(self, *args, facets: bool = True, **kwargs):
        queryset = (
            Tag.objects.order_by("path") if facets else Tag.objects.filter(depth__gt=1).order_by("path")
        )
        super().__init__(queryset, *args, **kwargs)
        self._labels: dict[int, str] | None = None

    def label_from_instance(self, obj: Tag) -> str:
        if self._labels is None:
            self._labels = services.tag_labels()
        return self._labels.get(obj.pk, obj.name)


class TagCreateForm(forms.Form):
    name = forms.CharField(max_length=100)
    parent = TagField(required=False, empty_label="— a new facet —", help_text="Leave empty to add a facet.")
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))


class TagEditForm(forms.Form):
    name = forms.CharField(max_length=100)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))
    version = forms.IntegerField(widget=forms.HiddenInput)


class TagMoveForm(forms.Form):
    parent = TagField(required=False, empty_label="— top level (a facet) —", label="New parent")
    version = forms.IntegerField(widget=forms.HiddenInput)


class TagMergeForm(forms.Form):
    target = TagField(
        label="Merge into", help_text="Its items keep their tags; this tag's name becomes an alias."
    )


class TagDeleteForm(forms.Form):
    merge_into = TagField(required=False, label="Move its items to", empty_label="— nothing: untag them —")
    confirm = forms.BooleanField(required=False, label="Yes, untag the items listed below")


class TagRetireForm(forms.Form):
    retired = forms.BooleanField(required=False)
    version = forms.IntegerField(widget=forms.HiddenInput)


class BulkTagForm(forms.Form):
    items = forms.TypedMultipleChoiceField(
        coerce=int, choices=(), error_messages={"required": "Select items first."}
    )
    tag = forms.CharField(max_length=700, help_text="A path such as Genre > Comedy")
    action = forms.ChoiceField(choices=[("add", "Add tag"), ("remove", "Remove tag")])

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Any posted id is a valid choice; the service ignores ids that do not exist.
        self.fields["items"].valid_value = lambda value: str(value).isdigit()

    def clean_tag(self):
        tag = services.tag_resolve(path=self.cleaned_data["tag"])
        if tag is None:
            raise forms.ValidationError("No such tag. Pick one from the list.")
        return tag


class ImportForm(forms.Form):
    file = forms.FileField(
        help_text="CSV or JSON, UTF-8 or Latin-1. Items (external_id,title,…) or a taxonomy (path)."
    )
    strict = forms.BooleanField(
        required=False, label="Strict: report unknown tag paths instead of creating them"
    )
