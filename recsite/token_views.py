"""API token pages and ``/api/token/`` (the services are in recsite.tokens)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from .models import ApiToken
from .tokens import MAX_NAME_LENGTH, token_create, token_may_manage, token_revoke


class ObtainToken(APIView):
    """Trade a user name and password for a new token (DRF's ``/api/token/`` contract).

    Unlike DRF's view, every call creates a new token: a stored hash cannot be handed out
    again. Revoke unused ones on the API tokens page.
    """

    authentication_classes = []
    permission_classes = []
    # DRF's token view turns throttling off; keep the API rates so it cannot be used to guess
    # passwords faster than the (throttled) login form.
    throttle_classes = api_settings.DEFAULT_THROTTLE_CLASSES
    serializer_class = AuthTokenSerializer

    @extend_schema(
        request=AuthTokenSerializer,
        responses={200: inline_serializer("ObtainedToken", {"token": serializers.CharField()})},
        summary="Create an API token with a user name and password",
        tags=["auth"],
    )
    def post(self, request):
        serializer = AuthTokenSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        user = serializer.validated_data["user"]
        _, key = token_create(user=user, name="api/token", created_by=user)
        return Response({"token": key})


def api_tokens(request):
    """The signed-in user's tokens (all tokens for admins); create one, shown once."""
    new_key = None
    manage_all = request.user.has_perm("recsite.change_apitoken")
    if request.method == "POST":
        name = request.POST.get("name", "").strip()
        target = request.user
        username = request.POST.get("user", "").strip()
        if manage_all and username and username != request.user.get_username():
            target = get_user_model().objects.filter(username=username).first()
        if not name:
            messages.error(request, "Name what will use the token (a script, a backend…).")
        elif len(name) > MAX_NAME_LENGTH:
            messages.error(request, f"The name is too long (at most {MAX_NAME_LENGTH} characters).")
        elif target is None:
            messages.error(request, f"There is no user {username!r}.")
        else:
            token, new_key = token_create(user=target, name=name, created_by=request.user)
            messages.success(
                request, f"Token {token.prefix}… created for {target}. Copy it now: it is shown once."
            )
    tokens = ApiToken.objects.select_related("user", "created_by")
    if not manage_all:
        tokens = tokens.filter(user=request.user)
    return render(
        request, "recsite/api_tokens.html", {"tokens": tokens, "new_key": new_key, "manage_all": manage_all}
    )


@require_POST
def api_token_revoke(request, pk: int):
    token = get_object_or_404(ApiToken.objects.select_related("user"), pk=pk)
    if not token_may_manage(user=request.user, token=token):
        raise PermissionDenied
    if token_revoke(token=token, revoked_by=request.user):
        messages.success(request, f"Token {token.prefix}… revoked.")
    return redirect("api_tokens")
