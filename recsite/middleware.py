import zoneinfo

from django.contrib.auth.middleware import LoginRequiredMiddleware as DjangoLoginRequiredMiddleware
from django.utils import timezone


class LoginRequiredMiddleware(DjangoLoginRequiredMiddleware):
    """Every HTML page needs a login; the API authenticates itself (session or token)
    and answers 401/403 in JSON instead of redirecting to the login page."""

    def process_view(self, request, view_func, view_args, view_kwargs):
        if request.path_info.startswith("/api/"):
            return None
        return super().process_view(request, view_func, view_args, view_kwargs)


# The user's time zone is read once per session and kept there under this key.
TIMEZONE_SESSION_KEY = "recsite_time_zone"


class UserTimezoneMiddleware:
    """Render times in the signed-in user's time zone (their preference, else TIME_ZONE).

    The preference is read from the database once per session, then from the session. The API
    is left alone: it answers in UTC ISO 8601 whoever asks.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        name = self._time_zone(request)
        if name:
            try:
                timezone.activate(zoneinfo.ZoneInfo(name))
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                timezone.deactivate()
        else:
            timezone.deactivate()
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()

    @staticmethod
    def _time_zone(request) -> str:
        user = getattr(request, "user", None)
        if request.path_info.startswith("/api/") or user is None or not user.is_authenticated:
            return ""
        session = getattr(request, "session", None)
        if session is not None and TIMEZONE_SESSION_KEY in session:
            return session[TIMEZONE_SESSION_KEY]
        from .models import UserPreference

        name = UserPreference.objects.filter(user=user).values_list("time_zone", flat=True).first() or ""
        if session is not None:
            session[TIMEZONE_SESSION_KEY] = name
        return name


def time_zone_set(*, request, time_zone: str) -> None:
    """Save the user's time zone ("" for the site's) and use it from the next response on."""
    from .models import UserPreference

    UserPreference.objects.update_or_create(user=request.user, defaults={"time_zone": time_zone})
    request.session[TIMEZONE_SESSION_KEY] = time_zone
