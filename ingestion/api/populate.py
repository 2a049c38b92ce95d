"""The ``/populate`` API (admin only): queue database population jobs and follow them.

``POST /populate/reference``, ``POST /populate/instruments`` (a Dhan scrip master or plain
CSV, uploaded as multipart ``file`` or fetched from ``{"url": ...}``) and
``POST /populate/history`` answer 202 with the job id once the request is valid; a bad
request is a 400 and queues nothing. ``GET /populate/jobs/{id}`` reports state, progress and
errors.
"""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api.parsers import JSONObjectParser
from core.api.permissions import IsAdminRole
from core.api.schema import error_responses
from core.api.serializers import StrictFieldsMixin
from ingestion.backfill import BackfillError
from ingestion.jobs import (
    FILE_FORMATS,
    instruments_upload_store,
    populate_history_job_create,
    populate_instruments_job_create,
    populate_reference_job_create,
)
from ingestion.models import PopulateJob
from instruments.importers import url_refusal

TAGS = ["populate"]


# --- serializers -----------------------------------------------------------------------------------


class JobQueuedSerializer(serializers.Serializer):
    """The answer to a queued job: where to follow it."""

    job_id = serializers.IntegerField()
    state = serializers.CharField(help_text="queued")
    status_url = serializers.CharField(help_text="GET it for state, progress and errors.")


class JobProgressSerializer(serializers.Serializer):
    done = serializers.IntegerField()
    total = serializers.IntegerField(help_text="0 while unknown (e.g. a download still streaming).")


class JobSerializer(serializers.ModelSerializer):
    """A population job: what it does, how far it got, and what went wrong."""

    # Plain strings in the schema: enums named "kind" and "state" exist already (providers, streams).
    kind = serializers.CharField(help_text="reference | instruments | history")
    state = serializers.CharField(help_text="queued | running | succeeded | failed")
    progress = serializers.SerializerMethodField()
    params = serializers.SerializerMethodField()
    errors = serializers.ListField(
        child=serializers.DictField(), help_text="Problems met: {line, error} for file rows, {error} otherwise."
    )
    created_by = serializers.IntegerField(source="created_by_id", allow_null=True)

    class Meta:
        model = PopulateJob
        fields = [
            "id",
            "kind",
            "state",
            "params",
            "progress",
            "message",
            "errors",
            "created_by",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields

    @extend_schema_field(JobProgressSerializer)
    def get_progress(self, job: PopulateJob) -> dict:
        return {"done": job.progress_done, "total": job.progress_total}

    def get_params(self, job: PopulateJob) -> dict:
        # The server-side path of an upload is nobody's business.
        return {key: value for key, value in (job.params or {}).items() if key != "path"}


class ReferenceInputSerializer(StrictFieldsMixin, serializers.Serializer):
    """Nothing to choose: the reference data is part of the application."""


class InstrumentsUploadSerializer(StrictFieldsMixin, serializers.Serializer):
    """An instrument file to upload (multipart/form-data)."""

    file = serializers.FileField(help_text="Dhan scrip master CSV, or exchange,symbol,name,type,sector,isin CSV.")
    format = serializers.ChoiceField(choices=FILE_FORMATS, default="dhan")
    include_derivatives = serializers.BooleanField(default=False, help_text="Dhan: also futures and options.")
    record_data = serializers.BooleanField(default=False, help_text="Stream the new instruments live.")


class InstrumentsUrlSerializer(StrictFieldsMixin, serializers.Serializer):
    """An instrument file to fetch (application/json)."""

    url = serializers.URLField(help_text="http(s) URL of the file, e.g. Dhan's api-scrip-master.csv.")
    format = serializers.ChoiceField(choices=FILE_FORMATS, default="dhan")
    include_derivatives = serializers.BooleanField(default=False, help_text="Dhan: also futures and options.")
    record_data = serializers.BooleanField(default=False, help_text="Stream the new instruments live.")

    def validate_url(self, value: str) -> str:
        if not value.lower().startswith(("http://", "https://")):
            raise serializers.ValidationError("Only http and https URLs are fetched.")
        if problem := url_refusal(value):  # internal literal addresses at once; names when fetched
            raise serializers.ValidationError(problem)
        return value


class HistoryInputSerializer(StrictFieldsMixin, serializers.Serializer):
    """A history backfill to queue."""

    provider = serializers.CharField(max_length=16, help_text="YF or DHAN.")
    interval = serializers.ChoiceField(choices=["1m", "1d"])
    start = serializers.DateField(required=False, allow_null=True, help_text="Exchange-local date, inclusive.")
    end = serializers.DateField(required=False, allow_null=True, help_text="Exchange-local date, inclusive.")
    symbols = serializers.ListField(
        child=serializers.CharField(max_length=80),
        required=False,
        allow_null=True,
        max_length=1000,
        help_text="AAPL, NSE:RELIANCE, ...; default: every instrument streamed through the provider.",
    )


# --- views -------------------------------------------------------------------------------------------


def _queued(job: PopulateJob) -> Response:
    body = {"job_id": job.pk, "state": job.state, "status_url": f"/populate/jobs/{job.pk}"}
    return Response(body, status=status.HTTP_202_ACCEPTED)


class PopulateReferenceView(APIView):
    """Queue writing the reference data (types, sectors, exchanges, providers and their mappings)."""

    permission_classes = [IsAdminRole]

    @extend_schema(
        summary="Queue seeding the reference data (admin)",
        tags=TAGS,
        request=None,
        responses={202: JobQueuedSerializer, **error_responses(401, 403)},
    )
    def post(self, request: Request) -> Response:
        return _queued(populate_reference_job_create(created_by=request.user))


class PopulateInstrumentsView(APIView):
    """Queue an instrument import from an uploaded file or a URL."""

    permission_classes = [IsAdminRole]
    parser_classes = [MultiPartParser, FormParser, JSONObjectParser]

    @extend_schema(
        summary="Queue an instrument import: Dhan scrip master or plain CSV, uploaded or by URL (admin)",
        tags=TAGS,
        request={"multipart/form-data": InstrumentsUploadSerializer, "application/json": InstrumentsUrlSerializer},
        responses={202: JobQueuedSerializer, **error_responses(400, 401, 403)},
    )
    def post(self, request: Request) -> Response:
        if "file" in request.FILES and "url" in request.data:
            raise serializers.ValidationError({"non_field_errors": ["Send either a file or a url, not both."]})
        if "file" in request.FILES or "url" not in request.data:
            serializer = InstrumentsUploadSerializer(data=request.data)
            serializer.is_valid(raise_exception=True)
            data = serializer.validated_data
            upload = data["file"]
            try:
                path = instruments_upload_store(
                    chunks=upload.chunks(), filename=upload.name, file_format=data["format"]
                )
            except ValueError as exc:
                raise serializers.ValidationError({"file": [str(exc)]}) from exc
            job = populate_instruments_job_create(
                created_by=request.user,
                path=path,
                filename=upload.name,
                file_format=data["format"],
                include_derivatives=data["include_derivatives"],
                record_data=data["record_data"],
            )
            return _queued(job)
        serializer = InstrumentsUrlSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        job = populate_instruments_job_create(
            created_by=request.user,
            url=data["url"],
            file_format=data["format"],
            include_derivatives=data["include_derivatives"],
            record_data=data["record_data"],
        )
        return _queued(job)


class PopulateHistoryView(APIView):
    """Queue a price history backfill from Yahoo or Dhan."""

    permission_classes = [IsAdminRole]

    @extend_schema(
        summary="Queue a price history backfill (admin)",
        tags=TAGS,
        request=HistoryInputSerializer,
        responses={202: JobQueuedSerializer, **error_responses(400, 401, 403)},
    )
    def post(self, request: Request) -> Response:
        serializer = HistoryInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            job = populate_history_job_create(
                created_by=request.user,
                provider=data["provider"],
                interval=data["interval"],
                start=data.get("start"),
                end=data.get("end"),
                symbols=data.get("symbols"),
            )
        except BackfillError as exc:
            raise serializers.ValidationError(exc.errors) from exc
        return _queued(job)


class PopulateJobView(APIView):
    """One population job's state, progress and errors."""

    permission_classes = [IsAdminRole]

    @extend_schema(
        summary="Get a population job (admin)",
        tags=TAGS,
        parameters=[OpenApiParameter("job_id", int, OpenApiParameter.PATH, description="Job id.")],
        responses={200: JobSerializer, **error_responses(401, 403, 404)},
    )
    def get(self, request: Request, job_id: int) -> Response:
        return Response(JobSerializer(get_object_or_404(PopulateJob, pk=job_id)).data)
