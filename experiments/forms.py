from __future__ import annotations

import json

from django import forms

from .models import Experiment, Metric

# Page names under /experiments/ that an experiment key would shadow.
RESERVED_KEYS = {"new", "metrics", "power"}


class ExperimentForm(forms.ModelForm):
    segments = forms.CharField(
        required=False,
        label="Target segments",
        help_text="Segment ids, comma-separated. Empty = everybody.",
    )
    breakdown_segments = forms.CharField(
        required=False,
        label="Break results down by segments",
        help_text="Segment ids, comma-separated; the report also breaks down by the targeted ones. "
        "A profile counts in a segment when it was a member at its first exposure.",
    )
    primary_metric = forms.ModelChoiceField(
        queryset=Metric.objects.all(),
        required=False,
        help_text="For a bandit: the conversion metric that rewards an arm.",
    )
    secondary_metrics = forms.ModelMultipleChoiceField(
        queryset=Metric.objects.all(), required=False, widget=forms.CheckboxSelectMultiple
    )
    guardrail_metrics = forms.ModelMultipleChoiceField(
        queryset=Metric.objects.all(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Metrics that must not get worse (e.g. abandon rate).",
    )
    new_phase_reason = forms.CharField(
        required=False,
        max_length=300,
        label="Start a new phase because…",
        help_text=(
            "Changing traffic, targeting, variants, weights or metrics of an experiment that has traffic "
            "would mix two experiments in one analysis. Give a reason to start a new phase instead: "
            "users are re-randomised and the analysis restarts."
        ),
    )

    class Meta:
        model = Experiment
        fields = [
            "key", "name", "kind", "hypothesis", "traffic_percent", "planned_sample_size", "hash_seed",
            "namespace", "namespace_start", "namespace_end", "holdout_percent",
            "alpha", "correction", "cuped", "bandit_min_share", "version",
        ]  # fmt: skip
        widgets = {"hypothesis": forms.Textarea(attrs={"rows": 3}), "version": forms.HiddenInput}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        experiment = self.instance
        if experiment.pk:
            self.fields["key"].disabled = True
            self.fields["segments"].initial = ", ".join(str(s) for s in experiment.segment_ids)
            self.fields["breakdown_segments"].initial = ", ".join(
                str(s) for s in experiment.breakdown_segment_ids
            )
            roles: dict[str, list] = {"primary": [], "secondary": [], "guardrail": []}
            for em in experiment.experiment_metrics.all():
                roles[em.role].append(em.metric_id)
            self.fields["primary_metric"].initial = (roles["primary"] or [None])[0]
            self.fields["secondary_metrics"].initial = roles["secondary"]
            self.fields["guardrail_metrics"].initial = roles["guardrail"]
        if not experiment.pk or not experiment.is_locked:
            del self.fields["new_phase_reason"]
        # Scripts and older forms that do not send them keep the defaults (an A/B test).
        self.fields["kind"].required = False
        self.fields["bandit_min_share"].required = False
        # The version the editor loaded; a form posted without it (a script) checks the current one.
        self.fields["version"].required = False

    def clean_version(self) -> int:
        return self.cleaned_data.get("version") or self.instance.version

    def clean_kind(self) -> str:
        return self.cleaned_data.get("kind") or self.instance.kind or Experiment.Kind.AB

    def clean_bandit_min_share(self) -> float:
        value = self.cleaned_data.get("bandit_min_share")
        if value is None:
            return self.instance.bandit_min_share
        if not 0 <= value <= 0.5:
            raise forms.ValidationError("The minimum share per arm must be between 0 and 0.5.")
        return value

    def clean_key(self) -> str:
        key = self.cleaned_data["key"]
        if key in RESERVED_KEYS:
            raise forms.ValidationError(f"“{key}” is a reserved word; choose another key.")
        return key

    def clean_segments(self) -> list[int]:
        return _segment_ids(self.cleaned_data["segments"])

    def clean_breakdown_segments(self) -> list[int]:
        return _segment_ids(self.cleaned_data["breakdown_segments"])

    def clean(self):
        data = super().clean()
        primary = data.get("primary_metric")
        secondary, guardrails = data.get("secondary_metrics") or [], data.get("guardrail_metrics") or []
        chosen = [m.pk for m in secondary] + [m.pk for m in guardrails] + ([primary.pk] if primary else [])
        if len(chosen) != len(set(chosen)):
            raise forms.ValidationError("A metric can have only one role in an experiment.")
        return data

    def metric_roles(self) -> list[tuple[Metric, str]]:
        data = self.cleaned_data
        roles = [(data["primary_metric"], "primary")] if data.get("primary_metric") else []
        roles += [(m, "secondary") for m in data.get("secondary_metrics") or []]
        roles += [(m, "guardrail") for m in data.get("guardrail_metrics") or []]
        return roles


def _segment_ids(raw: str) -> list[int]:
    raw = raw.strip()
    if not raw:
        return []
    try:
        return [int(part) for part in raw.replace(" ", "").split(",") if part]
    except ValueError:
        raise forms.ValidationError("Use segment ids separated by commas, e.g. 3, 7.") from None


class VariantForm(forms.Form):
    key = forms.SlugField(max_length=100)
    name = forms.CharField(max_length=200)
    weight = forms.FloatField(min_value=0, max_value=1)
    payload = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 1}),
        help_text='JSON, e.g. {"recommender": "trending"}',
    )

    def clean_payload(self):
        raw = self.cleaned_data["payload"].strip()
        if not raw:
            return {}
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc.msg}.") from None
        if not isinstance(value, dict):
            raise forms.ValidationError("The payload must be a JSON object.")
        return value


class BaseVariantFormSet(forms.BaseFormSet):
    def clean(self):
        if any(self.errors):
            return
        rows = [f.cleaned_data for f in self.forms if f.cleaned_data and not f.cleaned_data.get("DELETE")]
        if len(rows) < 2:
            raise forms.ValidationError("Add a control (first row) and at least one other variant.")
        keys = [r["key"] for r in rows]
        if len(keys) != len(set(keys)):
            raise forms.ValidationError("Variant keys must be unique.")
        total = sum(r["weight"] for r in rows)
        if not 0.99 <= total <= 1.01:
            raise forms.ValidationError(f"Weights must add up to 1 (they add up to {total:g}).")

    def variants(self) -> list[dict]:
        return [
            {k: f.cleaned_data[k] for k in ("key", "name", "weight", "payload")}
            for f in self.forms
            if f.cleaned_data and not f.cleaned_data.get("DELETE")
        ]


VariantFormSet = forms.formset_factory(VariantForm, formset=BaseVariantFormSet, extra=1, can_delete=True)


class MetricForm(forms.ModelForm):
    class Meta:
        model = Metric
        fields = [
            "key", "name", "description", "kind", "event_type", "event_name", "aggregation",
            "value_property", "denominator_event_type", "window_hours", "retention_day",
            "winsorize_percentile", "higher_is_better",
        ]  # fmt: skip
        widgets = {"description": forms.Textarea(attrs={"rows": 2})}

    def clean(self):
        data = super().clean()
        kind = data.get("kind")
        if kind != Metric.Kind.RETENTION and not data.get("event_type"):
            self.add_error("event_type", "Choose the event type this metric counts.")
        if kind == Metric.Kind.RATIO and not data.get("denominator_event_type"):
            self.add_error("denominator_event_type", "A ratio needs a denominator event type.")
        if kind == Metric.Kind.RETENTION and data.get("retention_day") is None:
            self.add_error("retention_day", "Which day after the first exposure counts as retained?")
        return data


class ConcludeForm(forms.Form):
    decision = forms.ChoiceField(choices=Experiment.Decision.choices)
    variant = forms.ModelChoiceField(queryset=None, required=False, help_text="The variant to ship.")
    note = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))

    def __init__(self, *args, experiment: Experiment, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["variant"].queryset = experiment.variants.exclude(position=0)


class PowerForm(forms.Form):
    baseline = forms.FloatField(
        help_text="Baseline mean per profile (a conversion rate such as 0.12, or e.g. 3.4 plays).",
        min_value=0,
    )
    sd = forms.FloatField(
        required=False,
        min_value=0,
        label="Standard deviation",
        help_text="Leave empty for a conversion rate.",
    )
    mde = forms.FloatField(
        required=False, min_value=0, label="Minimum detectable lift (%)", help_text="Relative, e.g. 5."
    )
    n_per_variant = forms.IntegerField(required=False, min_value=2, label="Profiles per variant")
    alpha = forms.FloatField(initial=0.05, min_value=0.001, max_value=0.2)
    power = forms.FloatField(initial=0.8, min_value=0.5, max_value=0.99)

    def clean(self):
        data = super().clean()
        if not data.get("mde") and not data.get("n_per_variant"):
            raise forms.ValidationError(
                "Give a minimum detectable lift (to get a sample size) or a sample size."
            )
        if data.get("baseline") == 0:
            self.add_error("baseline", "The baseline must be above 0.")
        if data.get("sd") is None and data.get("baseline") is not None and data["baseline"] >= 1:
            self.add_error("sd", "Give the standard deviation of a mean metric (rates are below 1).")
        return data
