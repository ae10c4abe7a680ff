from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiExample, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from recsite import outbox
from recsite.api import error_response
from recsite.permissions import has_perms

from . import services, tasks
from .models import Experiment


class AssignmentQuery(serializers.Serializer):
    user_id = serializers.CharField(required=False, max_length=200)
    anonymous_id = serializers.CharField(required=False, max_length=200)
    record = serializers.BooleanField(required=False, default=True)

    def validate(self, attrs):
        if not attrs.get("user_id") and not attrs.get("anonymous_id"):
            raise serializers.ValidationError({"user_id": ["Give a user_id or an anonymous_id."]})
        return attrs


AssignmentResponse = inline_serializer(
    "AssignmentResponse",
    {
        "experiment": serializers.CharField(),
        "phase": serializers.IntegerField(),
        "in_experiment": serializers.BooleanField(),
        "reason": serializers.CharField(),
        "variant": serializers.CharField(allow_null=True),
        "payload": serializers.JSONField(),
        "bucket": serializers.FloatField(allow_null=True),
        "exposure_recorded": serializers.BooleanField(),
    },
)


class ExperimentAssignment(APIView):
    permission_classes = [has_perms("experiments.view_experiment")]

    @extend_schema(
        parameters=[AssignmentQuery],
        responses={200: AssignmentResponse},
        summary="The variant of a user (sticky), recording an exposure",
        description=(
            "Assigns the user (or anonymous id) to a variant of a running experiment with GrowthBook's "
            "v2 hash, persists the first assignment, and records an exposure unless `record=false`. "
            "Profiles that do not exist yet are created so the assignment sticks. Outside the experiment "
            "(not running, traffic, namespace, targeting) the control's payload is returned with "
            "`in_experiment: false`. A bandit experiment draws an arm per request from its latest "
            "Thompson-sampling allocation (`reason: drawn`, not sticky)."
        ),
        examples=[
            OpenApiExample(
                "Assigned",
                value={
                    "experiment": "home-row-ranker",
                    "phase": 1,
                    "in_experiment": True,
                    "reason": "assigned",
                    "variant": "treatment",
                    "payload": {"recommender": "trending-v2"},
                    "bucket": 0.6123,
                    "exposure_recorded": True,
                },
                response_only=True,
            )
        ],
    )
    def get(self, request, key: str):
        query = AssignmentQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        data = query.validated_data
        try:
            result = services.experiment_assign(
                key=key,
                user_id=data.get("user_id"),
                anonymous_id=data.get("anonymous_id"),
                record=data["record"],
            )
        except services.ExperimentError as exc:
            return error_response(str(exc), field=exc.field, status_code=exc.status)
        return Response(
            {
                "experiment": result.experiment.key,
                "phase": result.experiment.phase,
                "in_experiment": result.in_experiment,
                "reason": result.reason,
                "variant": result.variant.key if result.variant else None,
                "payload": result.variant.payload if result.variant else {},
                "bucket": result.bucket,
                "exposure_recorded": result.exposure_recorded,
            }
        )


class ExperimentResults(APIView):
    permission_classes = [has_perms("experiments.view_experiment")]

    @extend_schema(
        responses={
            200: inline_serializer(
                "ExperimentResults",
                {"as_of": serializers.DateTimeField(), "results": serializers.JSONField()},
            )
        },
        summary="The latest analysis of an experiment",
        description=(
            "Per metric and variant: sufficient statistics, relative lift with its Welch/delta-method "
            "interval, "
            "adjusted p-value, Bayesian chance to beat control and risk, always-valid interval; plus SRM, "
            "warnings and plain-language verdicts; `segments` (the breakdown by segment, membership at "
            "first exposure); `interleaving` (credits, wins, sign test; `interleaving.segments`: wins "
            "and sign test per segment) or `bandit` (arms, shares; `bandit.segments`: trials and "
            "successes per segment and arm) for those kinds. 404 until a first analysis has run."
        ),
    )
    def get(self, request, key: str):
        experiment = get_object_or_404(Experiment, key=key)
        snapshot = services.snapshot_latest(experiment=experiment)
        if snapshot is None:
            return error_response("No analysis yet: it runs hourly, or on demand.", status_code=404)
        return Response(
            {"as_of": snapshot.as_of, "computed_at": snapshot.computed_at, "results": snapshot.results}
        )


class ExperimentAnalyze(APIView):
    permission_classes = [has_perms("experiments.change_experiment")]

    @extend_schema(
        request=None,
        responses={202: inline_serializer("AnalyzeQueued", {"queued": serializers.BooleanField()})},
        summary="Queue an analysis now",
    )
    def post(self, request, key: str):
        experiment = get_object_or_404(Experiment, key=key)
        outbox.enqueue(tasks.experiment_analyze, experiment.pk)
        return Response({"queued": True}, status=status.HTTP_202_ACCEPTED)
