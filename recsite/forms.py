import zoneinfo
from datetime import date, timedelta

from django import forms

RANGE_PRESETS = (7, 30, 90)
MAX_RANGE_DAYS = 366
# Dates outside these bounds are refused (and date arithmetic near date.max would overflow).
EARLIEST, LATEST = date(1970, 1, 1), date(2999, 12, 31)


class DateRangeForm(forms.Form):
    """A preset (last 7/30/90 days, ending today) or explicit start and end dates.

    Used by the dashboard and the business-impact page (GET), and mirrored by the impact API.
    """

    days = forms.TypedChoiceField(
        choices=[(n, f"Last {n} days") for n in RANGE_PRESETS], coerce=int, required=False, empty_value=None
    )
    start = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args, today: date, default_days: int = 30, **kwargs):
        super().__init__(*args, **kwargs)
        self.today = today
        self.default_days = default_days

    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("start"), cleaned.get("end")
        if self.errors:
            return cleaned
        if start or end:
            if not start:
                self.add_error("start", "Choose a start date too (or a preset).")
            elif not end:
                self.add_error("end", "Choose an end date too (or a preset).")
            elif start < EARLIEST or end > LATEST:
                self.add_error("start" if start < EARLIEST else "end", "Choose a date between 1970 and 2999.")
            elif end < start:
                self.add_error("end", "The end date is before the start date.")
            elif (end - start).days + 1 > MAX_RANGE_DAYS:
                self.add_error("end", f"Choose at most {MAX_RANGE_DAYS} days.")
        return cleaned

    def range(self) -> tuple[date, date]:
        """The chosen [start, end], or the default preset when the form is empty or invalid."""
        data = self.cleaned_data if self.is_valid() else {}
        if data.get("start") and data.get("end"):
            return data["start"], data["end"]
        days = data.get("days") or self.default_days
        return self.today - timedelta(days=days - 1), self.today

    @property
    def preset(self) -> int | None:
        if not self.is_valid():
            return self.default_days
        if self.cleaned_data.get("start"):
            return None
        return self.cleaned_data.get("days") or self.default_days


def time_zone_choices() -> list[tuple[str, str]]:
    return [("", "Site default")] + [
        (name, name.replace("_", " ")) for name in sorted(zoneinfo.available_timezones())
    ]


class TimeZoneForm(forms.Form):
    time_zone = forms.ChoiceField(
        label="Time zone",
        required=False,
        help_text="Times on every page are shown in this time zone.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["time_zone"].choices = time_zone_choices()
