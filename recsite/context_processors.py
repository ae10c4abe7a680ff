def navigation(request):
    """Which top-level sections the current user may open (the nav shows only those)."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"nav": {}}
    return {
        "nav": {
            "catalog": user.has_perm("catalog.view_item"),
            "audience": user.has_perm("personalization.view_profile"),
            "recommendations": user.has_perm("personalization.view_recommender"),
            "experiments": user.has_perm("experiments.view_experiment"),
            "admin": user.is_staff,
            "audit": user.has_perm("recsite.view_auditentry"),
        }
    }
