from django import template

register = template.Library()


@register.filter
def get_item(mapping, key):
    """``{{ metrics|get_item:"ndcg@10" }}``: dictionary lookup for keys templates cannot spell."""
    if not isinstance(mapping, dict):
        return None
    return mapping.get(key)
