import re

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import OpenApiExample, extend_schema, inline_serializer
from rest_framework import generics, serializers, status
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.response import Response
from rest_framework.views import APIView

from catalog.models import Item
from recsite.api import error_response
from recsite.impact import home_impressions_record, impressions_record
from recsite.permissions import has_perms

from . import services, serving
from .models import Placement, Recommender, TrainingRun


class TrainingRunSerializer(serializers.ModelSerializer):
    recommender = serializers.SlugRelatedField(slug_field="name", read_only=True)

    class Meta:
        model = TrainingRun
        fields = [
            "id", "recommender", "version", "status", "progress", "message", "params", "data_sizes",
            "timings", "metrics", "error", "activation_note", "created_at", "started_at", "finished_at",
        ]  # fmt: skip
        read_only_fields = fields


class RecommenderSerializer(serializers.ModelSerializer):
    active_run = TrainingRunSerializer(read_only=True)

    class Meta:
        model = Recommender
        fields = [
            "id", "name", "description", "algorithm", "params", "retrain_every_hours", "primary_metric",
            "auto_activate", "active_run",
        ]  # fmt: skip

    def validate(self, attrs):
        algorithm = attrs.get("algorithm") or getattr(
            self.instance, "algorithm", Recommender.Algorithm.TRENDING
        )
        params = attrs.get("params", getattr(self.instance, "params", {}))
        try:
            attrs["params"] = services.recommender_params_clean(algorithm=algorithm, params=params)
        except DjangoValidationError as exc:
            raise serializers.ValidationError({"params": exc.messages}) from None
        return attrs


class RecommenderList(generics.ListCreateAPIView):
    """List recommenders or create one (name, algorithm, params)."""

    queryset = Recommender.objects.select_related("active_run", "active_run__recommender").order_by("name")
    serializer_class = RecommenderSerializer


class RecommenderDetail(generics.RetrieveUpdateAPIView):
    """Read or edit a recommender; edits apply from its next training run."""

    queryset = Recommender.objects.select_related("active_run", "active_run__recommender")
    serializer_class = RecommenderSerializer


class RecommenderTrain(APIView):
    permission_classes = [has_perms("personalization.add_trainingrun")]

    @extend_schema(
        request=None,
        responses={202: TrainingRunSerializer},
        summary="Start a training run",
        description=(
            "Queues a training run on the heavy worker queue. 409 when one is already queued or running."
        ),
    )
    def post(self, request, pk: int):
        recommender = generics.get_object_or_404(Recommender, pk=pk)
        try:
            run = services.training_run_request(recommender=recommender, requested_by=request.user)
        except services.TrainingError as exc:
            return error_response(str(exc), field="recommender", status_code=status.HTTP_409_CONFLICT)
        return Response(TrainingRunSerializer(run).data, status=status.HTTP_202_ACCEPTED)


class TrainingRunList(generics.ListAPIView):
    """Training runs, newest first; filter with ``?recommender=NAME``."""

    serializer_class = TrainingRunSerializer

    def get_queryset(self):
        runs = TrainingRun.objects.select_related("recommender")
        if name := self.request.query_params.get("recommender"):
            runs = runs.filter(recommender__name=name)
        return runs


class TrainingRunDetail(generics.RetrieveAPIView):
    """One training run: status, progress, timings, metrics and error."""

    queryset = TrainingRun.objects.select_related("recommender")
    serializer_class = TrainingRunSerializer


class TrainingRunActivate(APIView):
    permission_classes = [has_perms("personalization.change_recommender")]

    @extend_schema(
        request=None,
        responses={200: TrainingRunSerializer},
        summary="Activate a version (or roll back to it)",
        description="Makes this successful run the recommender's active model; 409 if it did not succeed.",
    )
    def post(self, request, pk: int):
        run = generics.get_object_or_404(TrainingRun.objects.select_related("recommender"), pk=pk)
        try:
            run = services.recommender_activate(run=run, user=request.user)
        except services.TrainingError as exc:
            return error_response(str(exc), field="run", status_code=status.HTTP_409_CONFLICT)
        return Response(TrainingRunSerializer(run).data)


class PlacementSerializer(serializers.ModelSerializer):
    recommender = serializers.SlugRelatedField(slug_field="name", queryset=Recommender.objects.all())

    class Meta:
        model = Placement
        fields = [
            "id", "key", "name", "recommender", "fallbacks", "k", "include_tags", "exclude_tags", "kinds",
            "exclude_consumed", "diversity", "segment_overrides",
        ]  # fmt: skip

    def validate_fallbacks(self, value):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise serializers.ValidationError("A list of recommender names.")
        known = set(Recommender.objects.filter(name__in=value).values_list("name", flat=True))
        if missing := [v for v in value if v not in known]:
            raise serializers.ValidationError(f"Unknown recommenders: {', '.join(missing)}.")
        return value

    def _string_list(self, value):
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise serializers.ValidationError("A list of strings.")
        return value

    validate_include_tags = validate_exclude_tags = validate_kinds = _string_list


class PlacementList(generics.ListCreateAPIView):
    """Placements: where recommendations appear and how they are made."""

    queryset = Placement.objects.select_related("recommender")
    serializer_class = PlacementSerializer


class PlacementDetail(generics.RetrieveUpdateDestroyAPIView):
    queryset = Placement.objects.select_related("recommender")
    serializer_class = PlacementSerializer
    lookup_field = "key"


class RecommendationItemSerializer(serializers.Serializer):
    item = serializers.CharField(source="item.external_id")
    title = serializers.CharField(source="item.title")
    score = serializers.FloatField()
    rank = serializers.IntegerField()
    reason = serializers.CharField()
    reason_data = serializers.DictField()
    recommendation_id = serializers.CharField()
    recommender = serializers.CharField()


class RecommendationQuery(serializers.Serializer):
    user_id = serializers.CharField(required=False, max_length=200)
    anonymous_id = serializers.CharField(required=False, max_length=200)
    k = serializers.IntegerField(
        required=False, min_value=1, max_value=100, help_text="Default: the placement's k, else 10."
    )
    placement = serializers.SlugField(required=False, max_length=100)
    recommender = serializers.SlugField(required=False, max_length=100)
    exclude_consumed = serializers.BooleanField(required=False, default=True)


_SLUG = re.compile(r"[-a-zA-Z0-9_]+\Z")
_BOOLEANS = {"true": True, "True": True, "1": True, "false": False, "False": False, "0": False}


def _recommendation_query_fast(params) -> dict | None:
    """What RecommendationQuery validates to, for plainly well-formed parameters, without
    building a serializer (a large share of a warm request). None sends anything unusual,
    and so every error, through the serializer."""
    data: dict = {"exclude_consumed": True}
    for name in ("user_id", "anonymous_id"):
        if (value := params.get(name)) is not None:
            # Non-printable (NUL, surrogates) and padded values take the serializer's rules.
            if not value or len(value) > 200 or value != value.strip() or not value.isprintable():
                return None
            data[name] = value
    for name in ("placement", "recommender"):
        if (value := params.get(name)) is not None:
            if len(value) > 100 or not _SLUG.match(value):
                return None
            data[name] = value
    if (value := params.get("k")) is not None:
        if not (value.isascii() and value.isdigit() and 1 <= int(value) <= 100):
            return None
        data["k"] = int(value)
    if (value := params.get("exclude_consumed")) is not None:
        if value not in _BOOLEANS:
            return None
        data["exclude_consumed"] = _BOOLEANS[value]
    return data


class JsonFirstNegotiation(DefaultContentNegotiation):
    """DRF's content negotiation without its cost for what scripts send: no Accept header,
    ``*/*`` or ``application/json`` pick the first renderer (JSON). Anything else (a browser
    asking for HTML under DEBUG, ``?format=``) is negotiated as usual."""

    def select_renderer(self, request, renderers, format_suffix=None):
        renderer = renderers[0]
        if (
            request.META.get("HTTP_ACCEPT", "*/*") in ("*/*", "application/json")
            and not format_suffix
            and renderer.media_type == "application/json"
            and self.settings.URL_FORMAT_OVERRIDE not in request.query_params
        ):
            return renderer, renderer.media_type
        return super().select_renderer(request, renderers, format_suffix)


RESULT_EXAMPLE = {
    "item": "m00017",
    "title": "The Quiet Harbour",
    "score": 0.81,
    "rank": 1,
    "reason": "Because you watched Night Shift",
    "reason_data": {"type": "because_you_watched", "item": 412},
    "recommendation_id": "6f1c0a4e9b2d4c1f8e7a5b3c2d1e0f9a",
    "recommender": "ease",
}


class Recommendations(APIView):
    permission_classes = [has_perms("personalization.view_recommender")]
    content_negotiation_class = JsonFirstNegotiation

    @extend_schema(
        parameters=[RecommendationQuery],
        responses={
            200: inline_serializer(
                "RecommendationsResponse",
                {
                    "recommender": serializers.CharField(),
                    "version": serializers.IntegerField(),
                    "placement": serializers.CharField(allow_null=True),
                    "experiment": serializers.DictField(allow_null=True),
                    "user_id": serializers.CharField(allow_null=True),
                    "known_profile": serializers.BooleanField(),
                    "results": RecommendationItemSerializer(many=True),
                },
            )
        },
        examples=[
            OpenApiExample(
                "Home row for a user",
                value={
                    "recommender": "ease",
                    "version": 3,
                    "placement": "home",
                    "user_id": "u00042",
                    "known_profile": True,
                    "results": [RESULT_EXAMPLE],
                },
                response_only=True,
            )
        ],
        summary="Recommendations for a profile",
        description=(
            "Items the profile already consumed are excluded by default. Each result carries a reason and a "
            "recommendation id for click attribution. Unknown profiles get non-personal results."
        ),
    )
    def get(self, request):
        data = _recommendation_query_fast(request.query_params)
        if data is None:
            query = RecommendationQuery(data=request.query_params)
            query.is_valid(raise_exception=True)
            data = query.validated_data
        try:
            served = serving.recommendations_get(
                user_id=data.get("user_id"),
                anonymous_id=data.get("anonymous_id"),
                k=data.get("k"),
                recommender_name=data.get("recommender"),
                placement_key=data.get("placement"),
                exclude_consumed=data["exclude_consumed"],
            )
        except serving.ServingError as exc:
            return error_response(str(exc), field=exc.field, status_code=exc.status)
        impressions_record(results=served.results, placement_key=served.placement and served.placement.key)
        return Response(
            {
                "recommender": served.recommender.name,
                "version": served.recommender.version,
                "placement": served.placement.key if served.placement else None,
                "experiment": served.experiment,
                "user_id": data.get("user_id"),
                "known_profile": served.known_profile,
                # Plain dicts, not RecommendationItemSerializer (same fields): the hot path.
                "results": [r.as_dict() for r in served.results],
            }
        )


class SimilarQuery(serializers.Serializer):
    k = serializers.IntegerField(required=False, default=10, min_value=1, max_value=100)
    recommender = serializers.SlugField(required=False, max_length=100)


class SimilarItems(APIView):
    permission_classes = [has_perms("personalization.view_recommender")]
    content_negotiation_class = JsonFirstNegotiation

    @extend_schema(
        parameters=[SimilarQuery],
        responses={200: RecommendationItemSerializer(many=True)},
        summary="Items similar to an item",
        description="From the first trained item-kNN, EASE, hybrid, ALS or content model (or the one named).",
    )
    def get(self, request, external_id: str):
        query = SimilarQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        item = generics.get_object_or_404(Item, external_id=external_id)
        try:
            results = serving.similar_items_get(
                item=item,
                k=query.validated_data["k"],
                recommender_name=query.validated_data.get("recommender"),
            )
        except serving.ServingError as exc:
            return error_response(str(exc), field=exc.field, status_code=exc.status)
        impressions_record(results=results, placement_key="similar")
        return Response(
            {"item": item.external_id, "results": RecommendationItemSerializer(results, many=True).data}
        )


class HomeQuery(serializers.Serializer):
    user_id = serializers.CharField(required=False, max_length=200)
    anonymous_id = serializers.CharField(required=False, max_length=200)
    k = serializers.IntegerField(required=False, default=12, min_value=1, max_value=50)


class Home(APIView):
    permission_classes = [has_perms("personalization.view_recommender")]
    content_negotiation_class = JsonFirstNegotiation

    @extend_schema(
        parameters=[HomeQuery],
        responses={
            200: inline_serializer(
                "HomeResponse",
                {
                    "user_id": serializers.CharField(allow_null=True),
                    "rows": inline_serializer(
                        "HomeRow",
                        {
                            "key": serializers.CharField(),
                            "title": serializers.CharField(),
                            "results": RecommendationItemSerializer(many=True),
                        },
                        many=True,
                    ),
                },
            )
        },
        summary="Netflix-like home rows for a profile",
        description='Rows: "Top picks for you", "Because you watched X", "Trending now", "New in <tag>".',
    )
    def get(self, request):
        query = HomeQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        data = query.validated_data
        rows = serving.home_rows(
            user_id=data.get("user_id"), anonymous_id=data.get("anonymous_id"), k=data["k"]
        )
        home_impressions_record(rows=rows)
        return Response(
            {
                "user_id": data.get("user_id"),
                "rows": [
                    {
                        "key": r.key,
                        "title": r.title,
                        "results": RecommendationItemSerializer(r.results, many=True).data,
                    }
                    for r in rows
                ],
            }
        )


# --- Tracking (Segment spec), profiles, zero-party data, privacy ----------------------------------
# Behavioural-data endpoints; the write path lives in personalization/tracking.py.

import logging  # noqa: E402

from django.contrib.auth.models import AnonymousUser  # noqa: E402
from django.db import DatabaseError  # noqa: E402
from drf_spectacular.extensions import OpenApiAuthenticationExtension  # noqa: E402
from drf_spectacular.types import OpenApiTypes  # noqa: E402
from rest_framework import authentication  # noqa: E402
from rest_framework import exceptions as drf_exceptions  # noqa: E402
from rest_framework.permissions import BasePermission  # noqa: E402

from recsite.tokens import HashedTokenAuthentication  # noqa: E402

from . import profiles as profile_services  # noqa: E402
from . import tracking  # noqa: E402
from .models import Profile, WriteKey  # noqa: E402

tracking_logger = logging.getLogger("personalization.tracking")


class WriteKeyAuthentication(authentication.BaseAuthentication):
    """HTTP Basic with a source's write key as the user name and an empty password (Segment)."""

    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header.lower().startswith("basic "):
            return None
        write_key = tracking.write_key_authenticate(authorization=header)
        if write_key is None:
            raise drf_exceptions.AuthenticationFailed("Invalid or revoked write key.")
        return AnonymousUser(), write_key

    def authenticate_header(self, request):
        return 'Basic realm="recsite tracking"'


class WriteKeyScheme(OpenApiAuthenticationExtension):
    target_class = "personalization.api.WriteKeyAuthentication"
    name = "writeKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "basic",
            "description": "A source's write key as the user name, empty password (as Segment).",
        }


class HasWriteKey(BasePermission):
    def has_permission(self, request, view):
        return isinstance(request.auth, WriteKey)


TRACK_EXAMPLE = {
    "type": "track",
    "event": "Video Playback Started",
    "userId": "u42",
    "anonymousId": "3f1e-device",
    "messageId": "7b0c9a1e-7e0c-4a5c-9f35-3d6c1f0b2a11",
    "properties": {"content_asset_id": "m1001", "position": 0},
    "context": {"device": {"type": "tv"}},
    "originalTimestamp": "2026-11-30T20:15:02.120Z",
    "sentAt": "2026-11-30T20:15:03.000Z",
}
RESULT_EXAMPLE = {"success": True, "index": 0, "messageId": TRACK_EXAMPLE["messageId"], "status": "stored"}


class _TrackingEndpoint(APIView):
    authentication_classes = [WriteKeyAuthentication]
    permission_classes = [HasWriteKey]
    parser_classes: list = []  # the body is read by tracking.body_load (size limit first)
    kind: str | None = None

    def _ingest(self, request, messages, *, defaults=None, body_bytes=0):
        try:
            return tracking.events_ingest(
                source=request.auth.source,
                messages=messages,
                kind=self.kind,
                body_bytes=body_bytes,
                defaults=defaults,
            )
        except DatabaseError:
            tracking_logger.exception("events could not be stored")
            return None
        except Exception:
            # Never a 500 for the tracking API: clients retry a 503, and message ids make
            # the retry safe. The traceback is logged.
            tracking_logger.exception("unexpected error while ingesting events")
            return None

    def _body(self, request):
        length = request.META.get("CONTENT_LENGTH")
        return tracking.body_load(
            raw=lambda: request._request.body,
            content_length=int(length) if length and length.isdigit() else None,
        )

    def post(self, request):
        try:
            body, size = self._body(request)
        except tracking.BodyError as exc:
            return error_response(str(exc), field=exc.field, status_code=exc.status)
        report = self._ingest(request, [body], body_bytes=size)
        if report is None:
            return _unavailable()
        result = report.results[0]
        if result["status"] == "rejected":
            return Response(
                {"error": result["error"], "field": result["field"], "details": result},
                status=status.HTTP_400_BAD_REQUEST,
            )
        return Response({"success": True, **result})


def _unavailable():
    return error_response(
        "The events could not be stored right now; retry later (nothing was stored).",
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
    )


def _single_schema(kind: str, example: dict):
    return extend_schema(
        request=OpenApiTypes.OBJECT,
        responses={
            200: OpenApiTypes.OBJECT,
            400: OpenApiTypes.OBJECT,
            401: OpenApiTypes.OBJECT,
            413: OpenApiTypes.OBJECT,
        },
        summary=f"Segment {kind}",
        description=(
            f"A Segment-spec `{kind}` message. Authenticate with HTTP Basic, the write key as user "
            "name. `messageId` de-duplicates per source (a replay answers `duplicate`). "
            "The answer comes after the event is committed."
        ),
        examples=[
            OpenApiExample(kind, value=example, request_only=True),
            OpenApiExample("stored", value=RESULT_EXAMPLE, response_only=True),
        ],
        tags=["tracking"],
    )


class Track(_TrackingEndpoint):
    kind = "track"

    @_single_schema("track", TRACK_EXAMPLE)
    def post(self, request):
        return super().post(request)


class Identify(_TrackingEndpoint):
    kind = "identify"

    @_single_schema(
        "identify",
        {
            "userId": "u42",
            "anonymousId": "3f1e-device",
            "traits": {"plan": "premium", "$set_once": {"signup": "2026-01-02"}},
        },
    )
    def post(self, request):
        return super().post(request)


class Page(_TrackingEndpoint):
    kind = "page"

    @_single_schema("page", {"anonymousId": "3f1e-device", "name": "Home", "properties": {"path": "/"}})
    def post(self, request):
        return super().post(request)


class Alias(_TrackingEndpoint):
    kind = "alias"

    @_single_schema("alias", {"previousId": "3f1e-device", "userId": "u42"})
    def post(self, request):
        return super().post(request)


class Batch(_TrackingEndpoint):
    @extend_schema(
        request=OpenApiTypes.OBJECT,
        responses={
            200: OpenApiTypes.OBJECT,
            400: OpenApiTypes.OBJECT,
            401: OpenApiTypes.OBJECT,
            413: OpenApiTypes.OBJECT,
        },
        summary="Segment batch",
        description=(
            "Up to TRACKING_MAX_REQUEST_BYTES of messages of any type. Each message is validated on "
            "its own: the answer lists one result per message, in input order: `stored`, `duplicate` "
            "or `rejected` with the reason and the field."
        ),
        examples=[
            OpenApiExample("batch", value={"batch": [TRACK_EXAMPLE]}, request_only=True),
            OpenApiExample(
                "mixed results",
                value={
                    "success": False,
                    "stored": 1,
                    "duplicates": 0,
                    "rejected": 1,
                    "results": [
                        {"index": 0, "messageId": "a1", "status": "stored"},
                        {
                            "index": 1,
                            "messageId": "a2",
                            "status": "rejected",
                            "error": "userId or anonymousId is required.",
                            "field": "userId",
                        },
                    ],
                },
                response_only=True,
            ),
        ],
        tags=["tracking"],
    )
    def post(self, request):
        try:
            body, size = self._body(request)
        except tracking.BodyError as exc:
            return error_response(str(exc), field=exc.field, status_code=exc.status)
        messages = body.get("batch") if isinstance(body, dict) else None
        if not isinstance(messages, list):
            return error_response("batch must be a list of messages.", field="batch")
        defaults = {"sentAt": body.get("sentAt")} if body.get("sentAt") else None
        report = self._ingest(request, messages, defaults=defaults, body_bytes=size)
        if report is None:
            return _unavailable()
        return Response(
            {
                "success": report.rejected == 0,
                "stored": report.stored,
                "duplicates": report.duplicates,
                "rejected": report.rejected,
                "results": report.results,
            }
        )


def _profile_or_404(user_id: str) -> Profile:
    return generics.get_object_or_404(Profile, external_id=user_id)


class WriteKeyOrPerms(BasePermission):
    """A source's write key, or a signed-in user with the view's ``required_perms``."""

    def has_permission(self, request, view):
        if isinstance(request.auth, WriteKey):
            return True
        user = request.user
        perms = view.required_perms.get(request.method, ())
        return bool(user and user.is_authenticated and user.has_perms(perms))


class PreferencesSerializer(serializers.Serializer):
    liked = serializers.ListField(child=serializers.CharField(max_length=700), required=False, default=list)
    disliked = serializers.ListField(
        child=serializers.CharField(max_length=700), required=False, default=list
    )
    replace = serializers.BooleanField(required=False, default=True)


class ProfilePreferences(APIView):
    """Zero-party data: tags a person says they like or dislike (onboarding, quiz)."""

    authentication_classes = [
        WriteKeyAuthentication,
        authentication.SessionAuthentication,
        HashedTokenAuthentication,
    ]
    permission_classes = [WriteKeyOrPerms]
    required_perms = {
        "GET": ("personalization.view_declaredpreference",),
        "POST": ("personalization.add_declaredpreference",),
    }

    @extend_schema(
        responses={200: PreferencesSerializer}, summary="Declared preferences of a profile", tags=["profiles"]
    )
    def get(self, request, user_id: str):
        return Response(profile_services.preferences_for(profile=_profile_or_404(user_id)))

    @extend_schema(
        request=PreferencesSerializer,
        responses={200: PreferencesSerializer},
        summary="Declare preferences (onboarding)",
        description="Liked and disliked tags by slug path. Creates the profile when the user id is new.",
        examples=[OpenApiExample("onboarding", value={"liked": ["genre/anime"], "disliked": ["mood/dark"]})],
        tags=["profiles"],
    )
    def post(self, request, user_id: str):
        data = PreferencesSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        from . import identity

        try:
            clean = identity.id_clean(user_id, field="user_id")
            profile, _ = identity.profile_identify(user_id=clean, anonymous_id=None)
            profile_services.preferences_declare(
                profile=profile,
                liked=data.validated_data["liked"],
                disliked=data.validated_data["disliked"],
                origin="api",
                replace=data.validated_data["replace"],
            )
        except (identity.IdentityError, profile_services.ProfileError) as exc:
            return error_response(str(exc), field=exc.field)
        return Response(profile_services.preferences_for(profile=profile))


class ProfileExport(APIView):
    permission_classes = [has_perms("personalization.export_data", "personalization.view_profile")]

    @extend_schema(
        responses={200: OpenApiTypes.OBJECT}, summary="Export everything about one profile", tags=["privacy"]
    )
    def get(self, request, user_id: str):
        return Response(profile_services.profile_export(profile=_profile_or_404(user_id)))


class ProfileDelete(APIView):
    permission_classes = [has_perms("personalization.delete_profile")]

    @extend_schema(
        request=None,
        responses={200: OpenApiTypes.OBJECT},
        summary="Delete one profile and all its data",
        description="Events, traits, identities, interactions, preferences, memberships and assignments. "
        "The deletion is logged with a keyed hash of the id only.",
        tags=["privacy"],
    )
    def delete(self, request, user_id: str):
        log = profile_services.profile_delete(profile=_profile_or_404(user_id), deleted_by=request.user)
        return Response({"deleted": True, "id_hash": log.id_hash, "counts": log.counts})


# --- Segments ----------------------------------------------------------------------------------

from . import segments as segment_services  # noqa: E402
from .models import Segment, SegmentRefresh  # noqa: E402

SEGMENT_RULE_EXAMPLE = {
    "version": 1,
    "root": {
        "op": "and",
        "not": False,
        "conditions": [
            {
                "kind": "performed",
                "event": "play",
                "item_tag": "genre/anime",
                "count_op": "at_least",
                "count": 3,
                "last_days": 30,
            },
            {"kind": "not_performed", "event": "play", "last_days": 7},
        ],
    },
}


SEGMENT_RULE_DATES_EXAMPLE = {
    "version": 1,
    "root": {
        "op": "and",
        "conditions": [
            {
                "kind": "performed",
                "event": "play",
                "from": "2026-03-01",
                "to": "2026-03-31",
                "properties": [
                    {"property": "device", "op": "eq", "value": "tv"},
                    {"property": "minutes", "op": "gt", "value": 30},
                ],
            }
        ],
    },
}


class RuleField(serializers.JSONField):
    """A segment rule; validation errors name the part of the rule (``rule.root.conditions[1].value``)."""


def _rule_field(exc: segment_services.RuleError) -> str:
    return "rule" if exc.path == "rule" else f"rule.{exc.path}"


def _rule_error(exc: segment_services.RuleError):
    return error_response(f"{_rule_field(exc)}: {exc.message}", field=_rule_field(exc))


class SegmentRefreshSerializer(serializers.ModelSerializer):
    class Meta:
        model = SegmentRefresh
        fields = [
            "id", "status", "trigger", "started_at", "finished_at", "duration_seconds", "size", "entered",
            "exited", "error",
        ]  # fmt: skip
        read_only_fields = fields


class SegmentSerializer(serializers.ModelSerializer):
    rule = RuleField(required=False, allow_null=True)
    # Discovered segments are saved from the discovery page, not created empty.
    kind = serializers.ChoiceField(
        choices=[Segment.Kind.DYNAMIC, Segment.Kind.STATIC], default=Segment.Kind.DYNAMIC
    )

    class Meta:
        model = Segment
        fields = [
            "id", "key", "name", "description", "kind", "rule", "refresh_every_minutes", "size",
            "last_refreshed_at", "created_at",
        ]  # fmt: skip
        read_only_fields = ["size", "last_refreshed_at", "created_at"]

    def validate(self, attrs):
        kind = attrs.get("kind", Segment.Kind.DYNAMIC)
        if kind == Segment.Kind.DYNAMIC:
            try:
                segment_services.rule_validate(attrs.get("rule"))
            except segment_services.RuleError as exc:
                raise serializers.ValidationError({_rule_field(exc): [exc.message]}) from None
        else:
            attrs["rule"] = {}
        return attrs


class SegmentList(generics.ListCreateAPIView):
    """List segments or create one; a new dynamic segment is refreshed by a worker right away."""

    queryset = Segment.objects.order_by("name", "pk")
    serializer_class = SegmentSerializer

    @extend_schema(
        summary="Create a segment",
        tags=["segments"],
        examples=[
            OpenApiExample(
                "anime fans going quiet",
                value={"key": "anime-quiet", "name": "Anime fans going quiet", "rule": SEGMENT_RULE_EXAMPLE},
                request_only=True,
            ),
            OpenApiExample(
                "invalid rule",
                value={
                    "error": "rule.root.conditions[0].event: must be one of view, play, ...",
                    "field": "rule.root.conditions[0].event",
                    "details": {},
                },
                response_only=True,
                status_codes=["400"],
            ),
        ],
    )
    def post(self, request, *args, **kwargs):
        return super().post(request, *args, **kwargs)

    @extend_schema(summary="List segments", tags=["segments"])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def perform_create(self, serializer):
        from recsite import outbox

        from . import tasks

        segment = serializer.save(created_by=self.request.user)
        if segment.kind == Segment.Kind.DYNAMIC:
            outbox.enqueue(tasks.segment_refresh, segment.pk, "api")


class SegmentMembers(generics.ListAPIView):
    """Current members of a segment, paginated."""

    permission_classes = [has_perms("personalization.view_segment", "personalization.view_profile")]

    @extend_schema(
        summary="Current members of a segment",
        tags=["segments"],
        responses={
            200: inline_serializer(
                "SegmentMember",
                {
                    "profile_id": serializers.IntegerField(),
                    "user_id": serializers.CharField(allow_null=True),
                    "entered_at": serializers.DateTimeField(),
                },
            )
        },
        examples=[
            OpenApiExample(
                "members",
                value={"profile_id": 42, "user_id": "u-42", "entered_at": "2026-06-01T12:00:00Z"},
                response_only=True,
            )
        ],
    )
    def get(self, request, pk: int):
        segment = generics.get_object_or_404(Segment, pk=pk)
        rows = (
            segment.memberships.filter(exited_at__isnull=True)
            .order_by("profile_id")
            .values("profile_id", "profile__external_id", "entered_at")
        )
        page = self.paginate_queryset(rows)
        data = [
            {
                "profile_id": r["profile_id"],
                "user_id": r["profile__external_id"],
                "entered_at": r["entered_at"],
            }
            for r in page
        ]
        return self.get_paginated_response(data)


class SegmentRefreshStart(APIView):
    permission_classes = [has_perms("personalization.change_segment")]

    @extend_schema(
        request=None,
        responses={202: OpenApiTypes.OBJECT},
        summary="Refresh a segment now",
        description="Queues a refresh on the default worker queue. 409 when one is already running.",
        tags=["segments"],
        examples=[OpenApiExample("queued", value={"segment": 3, "queued": True}, response_only=True)],
    )
    def post(self, request, pk: int):
        from recsite import outbox

        from . import tasks

        segment = generics.get_object_or_404(Segment, pk=pk)
        if segment.kind != Segment.Kind.DYNAMIC:
            return error_response("Only dynamic segments are refreshed.", field="kind")
        if segment.refreshes.filter(status=SegmentRefresh.Status.RUNNING).exists():
            return error_response(
                "A refresh of this segment is already running.",
                field="segment",
                status_code=status.HTTP_409_CONFLICT,
            )
        outbox.enqueue(tasks.segment_refresh, segment.pk, "api")
        return Response({"segment": segment.pk, "queued": True}, status=status.HTTP_202_ACCEPTED)


class SegmentEstimate(APIView):
    permission_classes = [has_perms("personalization.view_segment")]

    @extend_schema(
        request=inline_serializer("SegmentEstimateRequest", {"rule": serializers.JSONField()}),
        responses={200: inline_serializer("SegmentEstimate", {"size": serializers.IntegerField()})},
        summary="Count the profiles a rule matches now",
        description="Used by the rule builder while editing. Errors name the part of the rule.",
        tags=["segments"],
        examples=[
            OpenApiExample("rule", value={"rule": SEGMENT_RULE_EXAMPLE}, request_only=True),
            OpenApiExample(
                "property filters and dates",
                summary="played on a TV for over 30 minutes in March 2026",
                value={"rule": SEGMENT_RULE_DATES_EXAMPLE},
                request_only=True,
            ),
            OpenApiExample("size", value={"size": 318}, response_only=True),
        ],
    )
    def post(self, request):
        try:
            data = request.data if isinstance(request.data, dict) else {}
            size = segment_services.segment_estimate(rule=data.get("rule"))
        except segment_services.RuleError as exc:
            return _rule_error(exc)
        return Response({"size": size})


class ProfileSegments(APIView):
    permission_classes = [has_perms("personalization.view_segment", "personalization.view_profile")]

    @extend_schema(
        responses={200: SegmentSerializer(many=True)},
        summary="Segments a profile is in now",
        tags=["segments"],
    )
    def get(self, request, user_id: str):
        profile = _profile_or_404(user_id)
        return Response(SegmentSerializer(segment_services.profile_segments(profile=profile), many=True).data)


# --- Segment webhooks ----------------------------------------------------------------------------

from drf_spectacular.utils import OpenApiParameter  # noqa: E402
from rest_framework.permissions import SAFE_METHODS, BasePermission  # noqa: E402

from . import webhooks as webhook_services  # noqa: E402
from .models import SegmentWebhook  # noqa: E402


class SegmentWebhookPermission(BasePermission):
    """Like the segment page: whoever sees segments sees their webhooks (never their secrets);
    adding or deleting one needs the right to change segments (marketers and admins)."""

    def has_permission(self, request, view):
        user = request.user
        perm = (
            "personalization.view_segment"
            if request.method in SAFE_METHODS
            else "personalization.change_segment"
        )
        return bool(user and user.is_authenticated and user.has_perm(perm))


class SegmentWebhookSerializer(serializers.ModelSerializer):
    secret_hint = serializers.CharField(read_only=True, help_text="The secret's first characters.")

    class Meta:
        model = SegmentWebhook
        fields = ["id", "segment", "url", "on_enter", "on_exit", "active", "secret_hint", "created_at"]
        read_only_fields = ["id", "segment", "active", "secret_hint", "created_at"]
        extra_kwargs = {
            "url": {"help_text": "An http:// or https:// URL, called with a signed POST (docs/segments.md)."},
            "on_enter": {"default": True, "help_text": "Call it when profiles enter the segment."},
            "on_exit": {"default": True, "help_text": "Call it when profiles leave the segment."},
        }


class SegmentWebhookCreated(SegmentWebhookSerializer):
    secret = serializers.CharField(read_only=True, help_text="The signing secret: shown in this answer only.")

    class Meta(SegmentWebhookSerializer.Meta):
        fields = [*SegmentWebhookSerializer.Meta.fields, "secret"]


WEBHOOK_EXAMPLE = {
    "id": 7, "segment": 3, "url": "https://hooks.example.com/recsite", "on_enter": True, "on_exit": False,
    "active": True, "secret_hint": "whsec_Q2…", "created_at": "2026-06-01T12:00:00Z",
}  # fmt: skip
SEGMENT_PARAMETER = OpenApiParameter(
    "segment",
    OpenApiTypes.INT,
    OpenApiParameter.PATH,
    description="The segment's id (404 when there is none).",
)
ERROR_EXAMPLE_404 = OpenApiExample(
    "no such segment",
    value={"error": "No Segment matches the given query.", "field": None, "details": {}},
    response_only=True,
    status_codes=["404"],
)


class SegmentWebhookList(generics.ListCreateAPIView):
    """A segment's webhooks; adding one answers with its signing secret, shown this once."""

    permission_classes = [SegmentWebhookPermission]
    serializer_class = SegmentWebhookSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # the schema generator has no URL kwargs
            return SegmentWebhook.objects.none()
        segment = generics.get_object_or_404(Segment, pk=self.kwargs["segment"])
        return SegmentWebhook.objects.filter(segment=segment).order_by("pk")

    @extend_schema(
        summary="List a segment's webhooks",
        tags=["segments"],
        parameters=[SEGMENT_PARAMETER],
        responses={200: SegmentWebhookSerializer(many=True), 404: OpenApiTypes.OBJECT},
        examples=[OpenApiExample("webhooks", value=WEBHOOK_EXAMPLE, response_only=True), ERROR_EXAMPLE_404],
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(
        summary="Add a webhook to a segment",
        description=(
            "The answer carries the signing secret (`secret`), which is never shown again: store it to "
            "verify the `X-Recsite-Signature` of each call. Written to the audit log."
        ),
        tags=["segments"],
        parameters=[SEGMENT_PARAMETER],
        responses={201: SegmentWebhookCreated, 400: OpenApiTypes.OBJECT, 404: OpenApiTypes.OBJECT},
        examples=[
            OpenApiExample(
                "entries only",
                value={"url": "https://hooks.example.com/recsite", "on_enter": True, "on_exit": False},
                request_only=True,
            ),
            OpenApiExample(
                "created",
                value={**WEBHOOK_EXAMPLE, "secret": "whsec_Q2h…(43 characters)"},
                response_only=True,
                status_codes=["201"],
            ),
            OpenApiExample(
                "bad URL",
                value={"error": "url: Enter an http:// or https:// URL.", "field": "url", "details": {}},
                response_only=True,
                status_codes=["400"],
            ),
            ERROR_EXAMPLE_404,
        ],
    )
    def post(self, request, *args, **kwargs):
        segment = generics.get_object_or_404(Segment, pk=self.kwargs["segment"])
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            webhook, secret = webhook_services.webhook_create(
                segment=segment,
                url=serializer.validated_data["url"],
                on_enter=serializer.validated_data["on_enter"],
                on_exit=serializer.validated_data["on_exit"],
                created_by=request.user,
            )
        except webhook_services.WebhookError as exc:
            return error_response(f"{exc.field}: {exc}", field=exc.field)
        data = SegmentWebhookCreated(webhook).data
        return Response({**data, "secret": secret}, status=status.HTTP_201_CREATED)


class SegmentWebhookDetail(generics.DestroyAPIView):
    """Delete one of a segment's webhooks (and its delivery log); pending retries stop."""

    permission_classes = [SegmentWebhookPermission]
    serializer_class = SegmentWebhookSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return SegmentWebhook.objects.none()
        return SegmentWebhook.objects.filter(segment_id=self.kwargs["segment"]).select_related("segment")

    @extend_schema(
        summary="Delete a segment's webhook",
        tags=["segments"],
        parameters=[
            SEGMENT_PARAMETER,
            OpenApiParameter("id", OpenApiTypes.INT, OpenApiParameter.PATH, description="The webhook's id."),
        ],
        responses={204: None, 404: OpenApiTypes.OBJECT},
    )
    def delete(self, request, *args, **kwargs):
        return super().delete(request, *args, **kwargs)

    def perform_destroy(self, instance):
        webhook_services.webhook_delete(webhook=instance, deleted_by=self.request.user)
