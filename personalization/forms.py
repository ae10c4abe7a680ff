from django import forms

from . import segments, services
from .models import Placement, Recommender, Segment


class RecommenderForm(forms.ModelForm):
    class Meta:
        model = Recommender
        fields = [
            "name",
            "description",
            "algorithm",
            "params",
            "retrain_every_hours",
            "primary_metric",
            "auto_activate",
        ]
        help_texts = {"params": "A JSON object; {} uses the defaults listed beside the form."}

    def clean(self):
        cleaned = super().clean()
        algorithm = cleaned.get("algorithm")
        if algorithm and "params" in cleaned:
            try:
                cleaned["params"] = services.recommender_params_clean(
                    algorithm=algorithm, params=cleaned["params"]
                )
            except forms.ValidationError as exc:
                self.add_error("params", exc)
        return cleaned


class PlacementForm(forms.ModelForm):
    class Meta:
        model = Placement
        fields = [
            "key",
            "name",
            "recommender",
            "fallbacks",
            "k",
            "include_tags",
            "exclude_tags",
            "kinds",
            "exclude_consumed",
            "diversity",
            "segment_overrides",
        ]

    def clean_fallbacks(self):
        names = self.cleaned_data["fallbacks"] or []
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise forms.ValidationError('Enter a JSON list of recommender names, e.g. ["trending"].')
        known = set(Recommender.objects.filter(name__in=names).values_list("name", flat=True))
        if missing := [n for n in names if n not in known]:
            raise forms.ValidationError(f"Unknown recommenders: {', '.join(missing)}.")
        return names

    def _clean_list(self, name: str):
        value = self.cleaned_data[name] or []
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise forms.ValidationError('Enter a JSON list of strings, e.g. ["genre/anime"].')
        return value

    def clean_include_tags(self):
        return self._clean_list("include_tags")

    def clean_exclude_tags(self):
        return self._clean_list("exclude_tags")

    def clean_kinds(self):
        return self._clean_list("kinds")


class SegmentForm(forms.ModelForm):
    """Name, schedule and rule (the rule builder keeps the JSON in a hidden field)."""

    rule = forms.JSONField(required=False, widget=forms.HiddenInput)
    upload = forms.FileField(
        required=False, label="User ids (CSV)", help_text="Static segments: one user id per line."
    )

    class Meta:
        model = Segment
        fields = ["name", "key", "description", "kind", "refresh_every_minutes", "rule"]
        widgets = {"description": forms.Textarea(attrs={"rows": 2})}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["kind"].choices = [
            (Segment.Kind.DYNAMIC, "Dynamic (rules)"),
            (Segment.Kind.STATIC, "Static (uploaded list)"),
        ]

    def clean_upload(self) -> str | None:
        """The uploaded ids as text: decoded and parsed here, so a file that cannot be read is a
        form error and nothing is saved (UTF-8 or Latin-1, within CATALOG_IMPORT_MAX_MB)."""
        import csv
        import io

        from catalog.imports import ImportFileError, decode

        upload = self.cleaned_data.get("upload")
        if not upload:
            return None
        try:
            text, _ = decode(upload.read())
            for _row in csv.reader(io.StringIO(text)):
                pass
        except ImportFileError as exc:
            raise forms.ValidationError(str(exc)) from None
        except csv.Error as exc:
            raise forms.ValidationError(f"This is not a CSV of user ids: {exc}.") from None
        return text

    def clean(self):
        data = super().clean()
        if data.get("kind") == Segment.Kind.DYNAMIC:
            try:
                segments.rule_validate(data.get("rule"), segment_id=self.instance.pk)
            except segments.RuleError as exc:
                self.add_error("rule", f"{exc.path}: {exc.message}")
        else:
            data["rule"] = {}
        return data
