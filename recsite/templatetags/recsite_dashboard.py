from datetime import timedelta

from django import template

register = template.Library()


@register.filter
def percent(value, mode=""):
    """``{{ 0.1234|percent }}`` -> "12.3%"; ``percent:"abs"`` drops the sign of a change."""
    if value is None or value == "":
        return "—"
    value = float(value)
    if mode == "abs":
        value = abs(value)
    return f"{value * 100:.1f}%"


@register.filter
def age(value):
    """A timedelta as the largest sensible unit: "3 days", "5 hours", "12 minutes"."""
    if not isinstance(value, timedelta):
        return "—"
    seconds = int(value.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return "less than a minute"


@register.filter
def words(value):
    """An event type as words: "add_to_cart" -> "add to cart"."""
    return str(value).replace("_", " ")
