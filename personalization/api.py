from drf_spectacular.utils import OpenApiExample, extend_schema, inline_serializer
from rest_framework import generics, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from recsite.api import error_response
from recsite.permissions import has_perms

from . import services
from .models import Recommender, TrainingRun


class TrainingRunSerializer(serializers.ModelSerializer):
    recommender = serializers.SlugRelatedField(slug_field="name", read_only=True)

    class Meta:
        model = TrainingRun
        fields = [
            "id", "recommender", "version", "status", "progress", "message", "params", "data_sizes",
            "timings", "metrics", "error", "created_at", "started_at", "finished_at",
        ]  # fmt: skip
        read_only_fields = fields


class RecommenderSerializer(serializers.ModelSerializer):
    active_run = TrainingRunSerializer(read_only=True)

    class Meta:
        model = Recommender
        fields = ["id", "name", "description", "algorithm", "params", "retrain_every_hours", "active_run"]

    def validate_params(self, value):
        if not isinstance(value, dict):
            raise serializers.ValidationError("Must be a JSON object.")
        unknown = set(value) - set(services.TRENDING_DEFAULTS) - {"test_ratio"}
        if unknown:
            raise serializers.ValidationError(f"Unknown parameters: {', '.join(sorted(unknown))}.")
        return value


class RecommenderList(generics.ListCreateAPIView):
    """List recommenders or create one."""

    queryset = Recommender.objects.select_related("active_run").order_by("name")
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


class TrainingRunDetail(generics.RetrieveAPIView):
    """One training run: status, progress, timings, metrics and error."""

    queryset = TrainingRun.objects.select_related("recommender")
    serializer_class = TrainingRunSerializer


class RecommendationItemSerializer(serializers.Serializer):
    item = serializers.CharField(source="item.external_id")
    title = serializers.CharField(source="item.title")
    score = serializers.FloatField()
    rank = serializers.IntegerField()
    reason = serializers.CharField()
    reason_data = serializers.DictField()
    recommendation_id = serializers.CharField()


class RecommendationQuery(serializers.Serializer):
    user_id = serializers.CharField(required=False, max_length=200)
    anonymous_id = serializers.CharField(required=False, max_length=200)
    k = serializers.IntegerField(required=False, default=10, min_value=1, max_value=100)
    recommender = serializers.SlugField(required=False, max_length=100)
    exclude_consumed = serializers.BooleanField(required=False, default=True)


class Recommendations(APIView):
    permission_classes = [has_perms("personalization.view_recommender")]

    @extend_schema(
        parameters=[RecommendationQuery],
        responses={
            200: inline_serializer(
                "RecommendationsResponse",
                {
                    "recommender": serializers.CharField(),
                    "version": serializers.IntegerField(),
                    "user_id": serializers.CharField(allow_null=True),
                    "known_profile": serializers.BooleanField(),
                    "results": RecommendationItemSerializer(many=True),
                },
            )
        },
        examples=[
            OpenApiExample(
                "Trending for a user",
                value={
                    "recommender": "trending",
                    "version": 3,
                    "user_id": "u42",
                    "known_profile": True,
                    "results": [
                        {
                            "item": "m1001",
                            "title": "Night Harbour",
                            "score": 12.5,
                            "rank": 1,
                            "reason": "Trending now",
                            "reason_data": {"type": "trending"},
                            "recommendation_id": "6f1c...",
                        }
                    ],
                },
                response_only=True,
            )
        ],
        summary="Recommendations for a profile",
    )
    def get(self, request):
        query = RecommendationQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        data = query.validated_data
        try:
            recommender, profile, results = services.recommendations_get(
                user_id=data.get("user_id"),
                anonymous_id=data.get("anonymous_id"),
                k=data["k"],
                recommender_name=data.get("recommender"),
                exclude_consumed=data["exclude_consumed"],
            )
        except services.ServingError as exc:
            return error_response(str(exc), field=exc.field, status_code=exc.status)
        return Response(
            {
                "recommender": recommender.name,
                "version": recommender.active_run.version,
                "user_id": data.get("user_id"),
                "known_profile": profile is not None,
                "results": RecommendationItemSerializer(results, many=True).data,
            }
        )
