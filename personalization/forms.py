from django import forms

from . import services
from .models import Recommender


class RecommenderForm(forms.ModelForm):
    class Meta:
        model = Recommender
        fields = ["name", "description", "algorithm", "params", "retrain_every_hours"]
        help_texts = {
            "params": "JSON object. Trending accepts window_days, half_life_days, keep, k, test_ratio.",
        }

    def clean_params(self):
        params = self.cleaned_data["params"] or {}
        if not isinstance(params, dict):
            raise forms.ValidationError('Enter a JSON object, for example {"half_life_days": 7}.')
        unknown = set(params) - set(services.TRENDING_DEFAULTS) - {"test_ratio"}
        if unknown:
            raise forms.ValidationError(f"Unknown parameters: {', '.join(sorted(unknown))}.")
        return params
