import json

from django import template

register = template.Library()


@register.filter
def pct(value, signed: bool = True) -> str:
    """0.042 -> "+4.2%"; None (an open one-sided bound) -> "∞"."""
    if value is None or value == "":
        return "∞"
    try:
        number = float(value) * 100
    except (TypeError, ValueError):
        return ""
    return f"{number:+.1f}%" if signed else f"{number:.0f}%"


@register.filter
def as_json(value) -> str:
    """A payload as the JSON the API returns (autoescaped by the template)."""
    return json.dumps(value, sort_keys=True)
