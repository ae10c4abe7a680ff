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
