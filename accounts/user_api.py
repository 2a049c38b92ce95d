"""Admin REST API of users: ``/users/`` — list, read, approve/reject/(de)activate/change role, reset passwords.

Admin role only (reads too): anonymous 401, other users 403.
"""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import APIException, NotFound
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import services
from accounts.models import User
from accounts.selectors import user_get_for_admin, user_list
from core.api.pagination import LimitOffsetPagination
from core.api.permissions import IsAdminRole
from core.api.schema import error_responses
from core.api.serializers import StrictFieldsMixin

USER_ID = OpenApiParameter("user_id", OpenApiTypes.INT, OpenApiParameter.PATH, description="User id.")

LIST_PARAMETERS = [
    OpenApiParameter("status", OpenApiTypes.STR, enum=User.Status.values, description="Approval status."),
    OpenApiParameter("role", OpenApiTypes.STR, enum=User.Role.values, description="Role."),
    OpenApiParameter("is_active", OpenApiTypes.BOOL, description="true or false."),
    OpenApiParameter("search", OpenApiTypes.STR, description="Part of the email, first or last name, any case."),
]


class AdminUserOutputSerializer(serializers.ModelSerializer):
    """A user as administrators see it."""

    profile_picture_url = serializers.CharField(read_only=True, help_text="Empty when unknown.")

    class Meta:
        model = User
        fields = [
            "id",
            "email",
            "first_name",
            "last_name",
            "role",
            "status",
            "is_active",
            "is_superuser",
            "profile_picture_url",
            "date_joined",
            "last_login",
            "updated_at",
        ]
        read_only_fields = fields


class AdminUserUpdateInputSerializer(StrictFieldsMixin, serializers.Serializer):
    status = serializers.ChoiceField(choices=User.Status.choices, required=False)
    role = serializers.ChoiceField(choices=User.Role.choices, required=False)
    is_active = serializers.BooleanField(required=False)


class PasswordResetInputSerializer(StrictFieldsMixin, serializers.Serializer):
    mode = serializers.ChoiceField(
        choices=[("temporary", "temporary"), ("link", "link")],
        help_text="`temporary`: set a generated password and answer it once; `link`: email a reset link.",
    )


TemporaryPasswordOutputSerializer = inline_serializer(
    "TemporaryPasswordOutput",
    fields={
        "mode": serializers.CharField(default="temporary"),
        "temporary_password": serializers.CharField(help_text="Shown once; give it to the user."),
    },
)
ResetLinkSentOutputSerializer = inline_serializer(
    "PasswordResetLinkSentOutput",
    fields={
        "mode": serializers.CharField(default="link"),
        "detail": serializers.CharField(),
    },
)


class EmailUnavailable(APIException):
    """503: the email backend could not send the message."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "The email could not be sent; check the mail settings (EMAIL_URL) and try again."
    default_code = "email_unavailable"


def _user_or_404(user_id: str) -> User:
    user = user_get_for_admin(user_id=int(user_id))
    if user is None:
        raise NotFound("No such user.")
    return user


class UserListApi(GenericAPIView):
    """All users, filtered and paginated."""

    permission_classes = [IsAdminRole]
    pagination_class = LimitOffsetPagination
    serializer_class = AdminUserOutputSerializer
    filter_backends: list = []  # filters are validated by the selector

    @extend_schema(
        operation_id="users_list",
        tags=["users"],
        summary="List users (admin)",
        description="Ordered by email. Filters combine with AND; an unknown `status` or `role` is a 400.",
        parameters=LIST_PARAMETERS,
        responses={200: AdminUserOutputSerializer(many=True), **error_responses(400, 401, 403)},
    )
    def get(self, request: Request) -> Response:
        page = self.paginate_queryset(user_list(filters=request.query_params))
        return self.get_paginated_response(AdminUserOutputSerializer(page, many=True).data)


class UserDetailApi(APIView):
    """One user: read, or change status, role and is_active."""

    permission_classes = [IsAdminRole]

    @extend_schema(
        operation_id="users_retrieve",
        parameters=[USER_ID],
        tags=["users"],
        summary="Get a user (admin)",
        responses={200: AdminUserOutputSerializer, **error_responses(401, 403, 404)},
    )
    def get(self, request: Request, user_id: str) -> Response:
        return Response(AdminUserOutputSerializer(_user_or_404(user_id)).data)

    @extend_schema(
        operation_id="users_update",
        parameters=[USER_ID],
        tags=["users"],
        summary="Approve, reject, (de)activate a user or change their role (admin)",
        description=(
            "Send any of `status`, `role`, `is_active`. A rejected or deactivated user's tokens stop "
            "working at their next request (REST and WebSocket authentication). You cannot demote, "
            "deactivate, reject or un-approve yourself (400)."
        ),
        request=AdminUserUpdateInputSerializer,
        responses={200: AdminUserOutputSerializer, **error_responses(400, 401, 403, 404)},
    )
    def patch(self, request: Request, user_id: str) -> Response:
        user = _user_or_404(user_id)
        serializer = AdminUserUpdateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = services.user_admin_update(actor=request.user, user=user, **serializer.validated_data)
        return Response(AdminUserOutputSerializer(user).data)


class UserPasswordResetApi(APIView):
    """Reset a user's password: a temporary one answered once, or an emailed link."""

    permission_classes = [IsAdminRole]

    @extend_schema(
        operation_id="users_reset_password",
        parameters=[USER_ID],
        tags=["users"],
        summary="Reset a user's password (admin)",
        description=(
            "`mode: temporary` sets a generated password and answers it (200), once. `mode: link` emails "
            "the user a one-time link (the `PASSWORD_RESET_URL` template with `{uid}` and `{token}`, or "
            "this server's reset page) and answers 202 without the token. Both blacklist every refresh "
            "token of the user. 503 when the email cannot be sent."
        ),
        request=PasswordResetInputSerializer,
        responses={
            200: TemporaryPasswordOutputSerializer,
            202: ResetLinkSentOutputSerializer,
            **error_responses(400, 401, 403, 404, 503),
        },
    )
    def post(self, request: Request, user_id: str) -> Response:
        user = _user_or_404(user_id)
        serializer = PasswordResetInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        if serializer.validated_data["mode"] == "temporary":
            password = services.user_password_reset_temporary(user=user)
            return Response({"mode": "temporary", "temporary_password": password})
        try:
            services.user_password_reset_link_send(user=user, request=request._request)
        except services.EmailNotSent as exc:
            raise EmailUnavailable() from exc
        return Response(
            {"mode": "link", "detail": f"A password reset link was sent to {user.email}."},
            status=status.HTTP_202_ACCEPTED,
        )
