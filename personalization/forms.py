from django import forms

from . import services
from .models import Placement, Recommender


class RecommenderForm(forms.ModelForm):
    class Meta:
        model = Recommender
        fields = [
            "name", "description", "algorithm", "params", "retrain_every_hours", "primary_metric", "auto_activate",
        ]  # fmt: skip
        help_texts = {"params": "A JSON object; {} uses the defaults listed beside the form."}

    def clean(self):
        cleaned = super().clean()
        algorithm = cleaned.get("algorithm")
        if algorithm and "params" in cleaned:
            try:
                cleaned["params"] = services.recommender_params_clean(algorithm=algorithm, params=cleaned["params"])
            except forms.ValidationError as exc:
                self.add_error("params", exc)
        return cleaned


class PlacementForm(forms.ModelForm):
    class Meta:
        model = Placement
        fields = [
            "key", "name", "recommender", "fallbacks", "k", "include_tags", "exclude_tags", "kinds",
            "exclude_consumed", "diversity", "segment_overrides",
        ]  # fmt: skip

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
