"""API conventions shared by every app: JSON errors that name the field."""

from django.core.exceptions import PermissionDenied
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


def exception_handler(exc, context):
    """Every API error is ``{"error": message, "field": name-or-null, "details": {...}}``."""
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or "Not found.")
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    detail = response.data
    field = None
    message = "Invalid request."
    if isinstance(exc, exceptions.ValidationError) and isinstance(detail, dict):
        field, errors = next(iter(detail.items()), (None, []))
        first = errors[0] if isinstance(errors, list) and errors else errors
        message = f"{field}: {first}" if field not in (None, "non_field_errors") else str(first)
        if field == "non_field_errors":
            field = None
    elif isinstance(detail, dict) and "detail" in detail:
        message = str(detail["detail"])
    elif isinstance(detail, list) and detail:
        message = str(detail[0])
    response.data = {"error": message, "field": field, "details": detail}
    return response


def error_response(message: str, *, field: str | None = None, status_code: int = status.HTTP_400_BAD_REQUEST):
    return Response({"error": message, "field": field, "details": {}}, status=status_code)


# --- Business impact ---------------------------------------------------------------------------

from datetime import timedelta  # noqa: E402

from django.conf import settings  # noqa: E402
from django.utils import timezone  # noqa: E402
from drf_spectacular.types import OpenApiTypes  # noqa: E402
from drf_spectacular.utils import OpenApiExample, extend_schema  # noqa: E402
from rest_framework import serializers  # noqa: E402
from rest_framework.views import APIView  # noqa: E402

from .permissions import has_perms  # noqa: E402


class ImpactQuery(serializers.Serializer):
    days = serializers.ChoiceField(choices=[7, 30, 90], required=False, help_text="Last N days (default 30).")
    start = serializers.DateField(required=False, help_text="First day (UTC), with `end` instead of `days`.")
    end = serializers.DateField(required=False, help_text="Last day (UTC), inclusive.")
    by = serializers.ChoiceField(choices=["placement", "recommender"], required=False, default="placement")

    def validate(self, data):
        start, end = data.get("start"), data.get("end")
        if (start is None) != (end is None):
            raise serializers.ValidationError({"end" if start else "start": "Give both start and end."})
        if start and end:
            from .forms import EARLIEST, LATEST

            if start < EARLIEST or end > LATEST:
                field = "start" if start < EARLIEST else "end"
                raise serializers.ValidationError({field: "Choose a date between 1970 and 2999."})
            if end < start:
                raise serializers.ValidationError({"end": "The end date is before the start date."})
            if (end - start).days + 1 > 366:
                raise serializers.ValidationError({"end": "Choose at most 366 days."})
        return data


IMPACT_EXAMPLE = {
    "days": ["2026-11-29", "2026-11-30"],
    "by": "placement",
    "window_hours": 24,
    "summary": {
        "impressions": 5200,
        "clicks": 312,
        "ctr": 0.06,
        "engagement": {"play": {"events": 900, "attributed": 270, "share": 0.3}},
        "engagement_share": 0.3,
    },
    "totals": {"play": [450, 450]},
    "series": [
        {
            "key": "home",
            "impressions": [2600, 2600],
            "clicks": [150, 162],
            "ctr": [0.0577, 0.0623],
            "attributed": {"play": [130, 140]},
            "share": {"play": [0.2889, 0.3111]},
        }
    ],
}


class Impact(APIView):
    """The business-impact figures the Business impact page charts, as JSON."""

    permission_classes = [has_perms("personalization.view_recommender")]

    @extend_schema(
        parameters=[ImpactQuery],
        responses={200: OpenApiTypes.OBJECT},
        examples=[OpenApiExample("Plays from the home row", value=IMPACT_EXAMPLE, response_only=True)],
        summary="Business impact: engagement attributed to recommendations, per day",
        description=(
            "Per placement (or per recommender with `by=recommender`) and per UTC day: impressions, clicks, "
            "click-through rate, and the share of each engagement type (plays, completes, purchases...) that "
            "followed a click on a recommendation of the same item by the same profile within "
            "IMPACT_ATTRIBUTION_WINDOW_HOURS. Figures are refreshed every 15 minutes (docs/impact.md)."
        ),
    )
    def get(self, request):
        from . import impact

        query = ImpactQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        data = query.validated_data
        if data.get("start"):
            day_from, day_to = data["start"], data["end"]
        else:
            day_to = timezone.now().date()
            day_from = day_to - timedelta(days=int(data.get("days") or 30) - 1)
        report = impact.impact_report(day_from=day_from, day_to=day_to, by=data["by"])
        return Response({**report.as_dict(), "window_hours": settings.IMPACT_ATTRIBUTION_WINDOW_HOURS})
