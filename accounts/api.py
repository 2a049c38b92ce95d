"""Authentication API: register, login, JWT refresh/logout, the current user, passwords and Google sign-in."""

from __future__ import annotations

from urllib.parse import urlencode

from django.conf import settings
from django.http import HttpResponseRedirect
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import APIException
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import google, services
from accounts.models import User
from accounts.selectors import google_login_configured
from accounts.throttles import AuthRateThrottle
from core.api.schema import error_responses
from core.api.serializers import StrictFieldsMixin

TOKEN_TYPE = "bearer"  # noqa: S105 - the OAuth token type, not a secret


class UserOutputSerializer(serializers.ModelSerializer):
    """The public view of a user."""

    # Blank when unknown, so not a "uri" in the schema.
    profile_picture_url = serializers.CharField(read_only=True, help_text="Empty when unknown.")

    class Meta:
        model = User
        fields = ["id", "email", "first_name", "last_name", "role", "status", "profile_picture_url"]
        read_only_fields = fields


class TokenPairOutputSerializer(serializers.Serializer):
    """A JWT pair with the user it belongs to."""

    access = serializers.CharField()
    refresh = serializers.CharField()
    token_type = serializers.CharField(default=TOKEN_TYPE)
    user = UserOutputSerializer()


def _token_pair_payload(user: User) -> dict:
    return {**services.user_tokens_issue(user=user), "token_type": TOKEN_TYPE, "user": UserOutputSerializer(user).data}


REGISTERED_MESSAGE = (
    "If this address was not registered yet, the account was created: sign in with this email and password."
)
REGISTERED_PENDING_MESSAGE = (
    "If this address was not registered yet, the account was created and waits for an administrator's "
    "approval: signing in answers 403 account_pending until then."
)


class RegisterOutputSerializer(serializers.Serializer):
    """The same answer whether or not the address was taken (nothing tells which emails exist)."""

    detail = serializers.CharField()
    email = serializers.EmailField(help_text="The address, normalized (lower case).")


class ServiceUnavailable(APIException):
    """503: a dependency (here, Google sign-in) is not configured or not available."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "Service temporarily unavailable."
    default_code = "service_unavailable"


class CredentialsView(APIView):
    """Base for endpoints that take credentials in the body instead of an Authorization header.

    No authentication classes: a stale header or session must not block a login, and there is no
    session to protect with CSRF. Failures still answer 401 with a ``WWW-Authenticate`` challenge.
    """

    authentication_classes: list = []
    permission_classes = [AllowAny]

    def get_authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


class RegisterView(CredentialsView):
    """Create an account with the ``user`` role (closed when ``REGISTRATION_OPEN`` is false)."""

    throttle_classes = [AuthRateThrottle]

    class RegisterInputSerializer(StrictFieldsMixin, serializers.Serializer):
        email = serializers.EmailField(max_length=254)
        password = serializers.CharField(max_length=128, trim_whitespace=False, style={"input_type": "password"})
        first_name = serializers.CharField(max_length=150, required=False, allow_blank=True, default="")
        last_name = serializers.CharField(max_length=150, required=False, allow_blank=True, default="")

    @extend_schema(
        operation_id="auth_register",
        tags=["auth"],
        summary="Create an account",
        description=(
            "Answers 202 with `detail` and the normalized `email`, the same whether the address was free "
            "(the account is created) or already taken (nothing changes), so the answer does not tell which "
            "addresses have accounts; sign in to use the account. A weak password is a 400 either way. With "
            "`REGISTRATION_REQUIRES_APPROVAL` on, the new account is `pending`: it can sign in only to learn "
            "so (403 `account_pending`) until an administrator approves it."
        ),
        request=RegisterInputSerializer,
        responses={202: RegisterOutputSerializer, **error_responses(400, 403, 429)},
        auth=[],
    )
    def post(self, request: Request) -> Response:
        serializer = self.RegisterInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.user_register(**serializer.validated_data)
        email = User.objects.normalize_email(serializer.validated_data["email"].strip()).lower()
        pending = services.user_initial_status() == User.Status.PENDING
        detail = REGISTERED_PENDING_MESSAGE if pending else REGISTERED_MESSAGE
        return Response({"detail": detail, "email": email}, status=status.HTTP_202_ACCEPTED)


class LoginView(CredentialsView):
    """Check email and password and answer a JWT pair with the user."""

    throttle_classes = [AuthRateThrottle]

    class LoginInputSerializer(StrictFieldsMixin, serializers.Serializer):
        email = serializers.EmailField(max_length=254, required=False)
        username_or_email = serializers.CharField(
            max_length=254,
            required=False,
            help_text="Alias of `email` (the email is the username here). Send one of the two; both must agree.",
        )
        password = serializers.CharField(max_length=128, trim_whitespace=False, style={"input_type": "password"})

        def validate(self, attrs: dict) -> dict:
            email = attrs.get("email")
            alias = attrs.pop("username_or_email", None)
            if email is None and alias is None:
                raise serializers.ValidationError({"email": ["Send email (or username_or_email)."]})
            if email is not None and alias is not None and email.strip().lower() != alias.strip().lower():
                raise serializers.ValidationError(
                    {"username_or_email": ["Differs from email; send one of them, or the same address in both."]}
                )
            attrs["email"] = email if email is not None else alias
            return attrs

    @extend_schema(
        operation_id="auth_login",
        tags=["auth"],
        summary="Exchange email and password for a JWT pair",
        description=(
            "`username_or_email` is accepted instead of `email`. Right credentials of an account an "
            "administrator has not approved answer 403 with `detail` starting `account_pending` (or "
            "`account_rejected`); wrong credentials or a deactivated account answer 401."
        ),
        request=LoginInputSerializer,
        responses={200: TokenPairOutputSerializer, **error_responses(400, 401, 403, 429)},
        auth=[],
    )
    def post(self, request: Request) -> Response:
        serializer = self.LoginInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = services.user_authenticate(request=request._request, **serializer.validated_data)
        return Response(_token_pair_payload(user))


class RefreshView(CredentialsView):
    """Rotate a refresh token: a new pair, and the old refresh token is blacklisted."""

    class RefreshInputSerializer(StrictFieldsMixin, serializers.Serializer):
        refresh = serializers.CharField()

    @extend_schema(
        operation_id="auth_refresh",
        tags=["auth"],
        summary="Trade a refresh token for a new pair (the old refresh token stops working)",
        request=RefreshInputSerializer,
        responses={
            200: inline_serializer(
                "TokenRefreshOutput", fields={"access": serializers.CharField(), "refresh": serializers.CharField()}
            ),
            **error_responses(400, 401, 403),
        },
        auth=[],
    )
    def post(self, request: Request) -> Response:
        serializer = self.RefreshInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return Response(services.user_tokens_refresh(refresh=serializer.validated_data["refresh"]))


class LogoutView(CredentialsView):
    """Blacklist a refresh token."""

    class LogoutInputSerializer(StrictFieldsMixin, serializers.Serializer):
        refresh = serializers.CharField()

    @extend_schema(
        operation_id="auth_logout",
        tags=["auth"],
        summary="Revoke a refresh token",
        description=(
            "Blacklists the refresh token; access tokens already issued stay valid until they expire "
            "(`POST /auth/logout-all` ends them all)."
        ),
        request=LogoutInputSerializer,
        responses={204: OpenApiResponse(description="Logged out."), **error_responses(400, 401)},
        auth=[],
    )
    def post(self, request: Request) -> Response:
        serializer = self.LogoutInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.user_tokens_revoke(refresh=serializer.validated_data["refresh"])
        return Response(status=status.HTTP_204_NO_CONTENT)


class LogoutAllView(APIView):
    """End every session of the signed-in user: all their access and refresh tokens stop working."""

    permission_classes = [IsAuthenticated]

    def get_authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'

    @extend_schema(
        operation_id="auth_logout_all",
        tags=["auth"],
        summary="Log out everywhere",
        description=(
            "Blacklists every refresh token of the user and revokes every access token issued so far "
            "(this one included): each answers 401 at its next request (within `HISTORY_AUTH_CACHE_S` on "
            "the history endpoints). Sign in again for a new pair."
        ),
        request=None,
        responses={204: OpenApiResponse(description="Logged out everywhere."), **error_responses(401, 403)},
    )
    def post(self, request: Request) -> Response:
        services.user_tokens_revoke_all(user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class MeView(APIView):
    """Read or rename the authenticated user."""

    permission_classes = [IsAuthenticated]

    class MeUpdateInputSerializer(StrictFieldsMixin, serializers.Serializer):
        first_name = serializers.CharField(max_length=150, required=False, allow_blank=True)
        last_name = serializers.CharField(max_length=150, required=False, allow_blank=True)

    @extend_schema(
        operation_id="auth_me",
        tags=["auth"],
        summary="The current user",
        responses={200: UserOutputSerializer, **error_responses(401)},
    )
    def get(self, request: Request) -> Response:
        return Response(UserOutputSerializer(request.user).data)

    @extend_schema(
        operation_id="auth_me_update",
        tags=["auth"],
        summary="Change the current user's name",
        request=MeUpdateInputSerializer,
        responses={200: UserOutputSerializer, **error_responses(400, 401)},
    )
    def patch(self, request: Request) -> Response:
        serializer = self.MeUpdateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = services.user_update(user=request.user, **serializer.validated_data)
        return Response(UserOutputSerializer(user).data)


class ChangePasswordView(APIView):
    """Change the signed-in user's own password; every other session must sign in again."""

    permission_classes = [IsAuthenticated]
    throttle_classes = [AuthRateThrottle]

    class ChangePasswordInputSerializer(StrictFieldsMixin, serializers.Serializer):
        old_password = serializers.CharField(max_length=128, trim_whitespace=False, style={"input_type": "password"})
        new_password = serializers.CharField(max_length=128, trim_whitespace=False, style={"input_type": "password"})

    @extend_schema(
        operation_id="auth_change_password",
        tags=["auth"],
        summary="Change your password (answers a fresh JWT pair)",
        description=(
            "Checks `old_password` (400 when wrong) and runs Django's password validators on "
            "`new_password`. Every token issued before (access and refresh) is revoked, so other "
            "sessions end at their next request; the answer is a fresh pair for this client."
        ),
        request=ChangePasswordInputSerializer,
        responses={200: TokenPairOutputSerializer, **error_responses(400, 401, 403, 429)},
    )
    def post(self, request: Request) -> Response:
        serializer = self.ChangePasswordInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        tokens = services.user_password_change(user=request.user, **serializer.validated_data)
        return Response({**tokens, "token_type": TOKEN_TYPE, "user": UserOutputSerializer(request.user).data})


class PasswordResetConfirmView(CredentialsView):
    """Set a new password with the ``uid`` and ``token`` of a reset link (front ends using ``PASSWORD_RESET_URL``)."""

    throttle_classes = [AuthRateThrottle]

    class PasswordResetConfirmInputSerializer(StrictFieldsMixin, serializers.Serializer):
        uid = serializers.CharField(max_length=64)
        token = serializers.CharField(max_length=128)
        new_password = serializers.CharField(max_length=128, trim_whitespace=False, style={"input_type": "password"})

    @extend_schema(
        operation_id="auth_reset_password_confirm",
        tags=["auth"],
        summary="Finish a password reset from an emailed link",
        description=(
            "`uid` and `token` come from the link an administrator had emailed "
            "(`POST /users/{id}/reset-password` with `mode: link`). A link works once; an invalid or "
            "expired one is a 400 on `token`. Every token of the user (access and refresh) is revoked."
        ),
        request=PasswordResetConfirmInputSerializer,
        responses={204: OpenApiResponse(description="Password set; sign in with it."), **error_responses(400, 429)},
        auth=[],
    )
    def post(self, request: Request) -> Response:
        serializer = self.PasswordResetConfirmInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.user_password_reset_confirm(**serializer.validated_data)
        return Response(status=status.HTTP_204_NO_CONTENT)


class GoogleLoginView(APIView):
    """Redirect to Google, or 503 when no Google app is configured."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="auth_google_login",
        tags=["auth"],
        summary="Start Google sign-in",
        description=(
            "Redirects the browser to Google. Google returns to `/accounts/google/login/callback/`, "
            "which signs the user in (creating the account, or linking an existing one with the same "
            "verified email) and continues to `/auth/google/complete`."
        ),
        request=None,
        responses={302: OpenApiResponse(description="Redirect to Google."), **error_responses(503)},
        auth=[],
    )
    def get(self, request: Request) -> HttpResponseRedirect:
        if not google_login_configured(request=request._request):
            raise ServiceUnavailable(
                "Google sign-in is not configured: set GOOGLE_CLIENT_ID and GOOGLE_CLIENT_SECRET, "
                "or add a Google social application in the admin."
            )
        return google.google_login_redirect(request=request._request)


class GoogleCompleteView(APIView):
    """Hand the user allauth just signed in with Google a JWT pair, once."""

    # The session allauth just created is the credential here; the service ends it at once.
    authentication_classes = [SessionAuthentication]
    permission_classes = [AllowAny]

    def get_authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'

    @extend_schema(
        operation_id="auth_google_complete",
        tags=["auth"],
        summary="Finish Google sign-in and receive a JWT pair",
        description=(
            "Reached by redirect after Google sign-in, once per sign-in. With `GOOGLE_LOGIN_REDIRECT_URL` "
            "set it redirects there with `#access=...&refresh=...&token_type=bearer`; otherwise it answers "
            "the pair as JSON."
        ),
        request=None,
        responses={
            200: TokenPairOutputSerializer,
            302: OpenApiResponse(description="Redirect to the front end with the tokens."),
            **error_responses(401, 403),
        },
        auth=[],
    )
    def get(self, request: Request) -> Response | HttpResponseRedirect:
        user = google.google_login_complete(request=request._request)
        payload = _token_pair_payload(user)
        if settings.GOOGLE_LOGIN_REDIRECT_URL:
            # A fragment never reaches servers or their logs, unlike a query string.
            fragment = urlencode({"access": payload["access"], "refresh": payload["refresh"], "token_type": TOKEN_TYPE})
            return HttpResponseRedirect(f"{settings.GOOGLE_LOGIN_REDIRECT_URL}#{fragment}")
        return Response(payload)
