"""Control of a provider's stream from the API: ``POST /providers/{id}/start`` and ``/stop``, ``GET .../status``.

The stream runs in the Celery workers (see ``ingestion.streams``); these actions ask for it to
start or stop and report what the workers last said (admin only, like the provider itself).
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from core.api.errors import Conflict
from core.api.schema import error_responses
from ingestion import streams


class DhanTokenSerializer(serializers.Serializer):
    """A Dhan access token: when it expires (its JWT ``exp``) and how its last renewal went."""

    expires_at = serializers.DateTimeField(allow_null=True, help_text="Null when the token carries no expiry.")
    expired = serializers.BooleanField()
    renewal = serializers.ChoiceField(choices=["ok", "failed"], allow_null=True, help_text="The last attempt.")
    renewal_error = serializers.CharField(allow_blank=True)
    renewal_at = serializers.DateTimeField(allow_null=True)


class StreamStatusSerializer(serializers.Serializer):
    """A provider's stream as the workers report it (``state`` unknown when Redis cannot be asked)."""

    provider = serializers.CharField()
    state = serializers.ChoiceField(choices=["running", "stopping", "starting", "stopped", "unknown"])
    running = serializers.BooleanField(allow_null=True, help_text="A worker holds the stream's lease.")
    desired = serializers.BooleanField(allow_null=True, help_text="False once an operator stopped it.")
    worker = serializers.CharField(allow_null=True, help_text="The worker holding the lease (node:pid).")
    pid = serializers.IntegerField(allow_null=True)
    started_at = serializers.DateTimeField(allow_null=True)
    updated_at = serializers.DateTimeField(allow_null=True, help_text="The worker's latest report.")
    last_tick_at = serializers.DateTimeField(allow_null=True)
    ticks_per_second = serializers.FloatField(allow_null=True, help_text="Over the last minute.")
    ticks = serializers.IntegerField(allow_null=True, help_text="Ticks taken since the stream started.")
    healthy = serializers.BooleanField(
        allow_null=True, help_text="The feed streams and is not degraded (null when not running)."
    )
    degraded_reason = serializers.CharField(
        allow_blank=True, help_text="Why a connected feed is degraded, e.g. 'all frames refused for 30s'."
    )
    stopped_at = serializers.DateTimeField(allow_null=True)
    stop_reason = serializers.CharField(allow_blank=True)
    last_error = serializers.CharField(allow_blank=True)
    last_error_at = serializers.DateTimeField(allow_null=True)
    token = DhanTokenSerializer(allow_null=True, help_text="Dhan providers: the access token's expiry and renewal.")
    clients = serializers.ListField(child=serializers.DictField(), help_text="Each feed client's status.")
    error = serializers.CharField(allow_blank=True, help_text="Why the state is unknown.")


class StreamsUnavailable(exceptions.APIException):
    """503: Redis, which coordinates the provider streams, is not configured or not reachable."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "Provider streams are not available."
    default_code = "streams_unavailable"


class ProviderStreamActions:
    """The stream actions of ``ProviderViewSet``: start, stop and status of the provider's stream."""

    def _stream_answer(self, command=None) -> Response:
        provider = self.get_object()
        if command is not None:
            try:
                command(provider=provider)
            except streams.StreamUnavailable as exc:
                raise StreamsUnavailable(str(exc)) from exc
            except streams.StreamError as exc:
                raise Conflict(str(exc)) from exc
        answer = StreamStatusSerializer(streams.stream_status(provider=provider)).data
        return Response(answer, status=status.HTTP_200_OK if command is None else status.HTTP_202_ACCEPTED)

    @extend_schema(
        summary="Start the provider's stream in a worker (admin)",
        request=None,
        responses={202: StreamStatusSerializer, **error_responses(401, 403, 404, 409, 503)},
    )
    @action(detail=True, methods=["post"], url_path="start")
    def start_stream(self, request: Request, pk: str | None = None) -> Response:
        return self._stream_answer(streams.stream_start)

    @extend_schema(
        summary="Stop the provider's stream and keep it stopped (admin)",
        request=None,
        responses={202: StreamStatusSerializer, **error_responses(401, 403, 404, 503)},
    )
    @action(detail=True, methods=["post"], url_path="stop")
    def stop_stream(self, request: Request, pk: str | None = None) -> Response:
        return self._stream_answer(streams.stream_stop)

    @extend_schema(
        summary="The provider's stream: running, worker, last tick, ticks/s, last error (admin)",
        responses={200: StreamStatusSerializer, **error_responses(401, 403, 404)},
    )
    @action(detail=True, methods=["get"], url_path="status")
    def stream_status(self, request: Request, pk: str | None = None) -> Response:
        return self._stream_answer()
