"""The custom user: email is the login, role decides who may write through the API."""

from __future__ import annotations

from django.contrib.auth.base_user import BaseUserManager
from django.contrib.auth.models import AbstractBaseUser, PermissionsMixin
from django.db import models
from django.db.models.functions import Lower

from core.models import BaseModel


class UserManager(BaseUserManager):
    """Creates users keyed by a normalized email address."""

    use_in_migrations = True

    def _create_user(self, email: str, password: str | None, **extra):
        if not email:
            raise ValueError("An email address is required.")
        email = self.normalize_email(email).lower()
        user = self.model(email=email, **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email: str, password: str | None = None, **extra):
        extra.setdefault("is_staff", False)
        extra.setdefault("is_superuser", False)
        return self._create_user(email, password, **extra)

    def create_superuser(self, email: str, password: str | None = None, **extra):
        # createsuperuser and the seeding commands make admins who can sign in at once.
        extra.update(is_staff=True, is_superuser=True, role=User.Role.ADMIN, status=User.Status.APPROVED)
        return self._create_user(email, password, **extra)

    def get_by_natural_key(self, username: str):
        return self.get(email__iexact=username)


class User(BaseModel, AbstractBaseUser, PermissionsMixin):
    """A person or program using the platform."""

    class Role(models.TextChoices):
        ADMIN = "admin", "Admin"
        USER = "user", "User"

    class Status(models.TextChoices):
        """Whether an administrator let the account in (``REGISTRATION_REQUIRES_APPROVAL``)."""

        PENDING = "pending", "Pending"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"

    email = models.EmailField(unique=True)
    first_name = models.CharField(max_length=150, blank=True)
    last_name = models.CharField(max_length=150, blank=True)
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.USER)
    status = models.CharField(
        max_length=10,
        choices=Status.choices,
        default=Status.APPROVED,
        db_index=True,
        help_text="Only approved users get tokens and data; registration makes pending users when "
        "REGISTRATION_REQUIRES_APPROVAL is on.",
    )
    profile_picture_url = models.URLField(max_length=500, blank=True)
    is_staff = models.BooleanField(default=False, help_text="May sign in to the admin site.")
    date_joined = models.DateTimeField(auto_now_add=True)
    token_version = models.PositiveIntegerField(
        default=0,
        editable=False,
        help_text="Every JWT carries the version it was issued under; raising it (a password change or "
        "reset, logging out everywhere) ends every token issued before.",
    )

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    class Meta:
        ordering = ["email"]
        constraints = [models.UniqueConstraint(Lower("email"), name="accounts_user_email_ci_unique")]

    def __str__(self) -> str:
        return self.email

    @property
    def is_admin(self) -> bool:
        """May write through the API: admin role or superuser."""
        return self.is_superuser or self.role == self.Role.ADMIN

    @property
    def is_approved(self) -> bool:
        """An administrator let the account in (or no approval was required)."""
        return self.status == self.Status.APPROVED

    def get_full_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip() or self.email

    def get_short_name(self) -> str:
        return self.first_name or self.email

    def clean(self) -> None:
        super().clean()
        self.email = type(self).objects.normalize_email(self.email).lower()

    def save(self, *args, **kwargs) -> None:
        # ``set_password`` leaves the raw password in ``_password`` until the save (a hash upgrade
        # by ``check_password`` does not): every path that changes the password (our services,
        # the Django admin, allauth, ``changepassword``) ends the tokens issued before.
        if self._password is not None and self.pk is not None:
            self.token_version += 1
            update_fields = kwargs.get("update_fields")
            if update_fields is not None and "token_version" not in update_fields:
                kwargs["update_fields"] = [*update_fields, "token_version"]
        super().save(*args, **kwargs)


class Watchlist(BaseModel):
    """A user's named list of instruments shown on the live dashboard."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="watchlists")
    name = models.CharField(max_length=100)
    # The seed front end's view of a list (seedcompat): the exchange it is for, and a dashboard flag.
    exchange = models.ForeignKey(
        "exchanges.Exchange",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="watchlists",
        help_text="The exchange this list is for (the seed front end offers a list only for its own "
        "exchange's instruments); empty for a list that mixes exchanges.",
    )
    show_on_dashboard = models.BooleanField(default=False, help_text="Pinned to the seed front end's dashboard.")

    class Meta:
        ordering = ["user", "created_at", "id"]
        constraints = [
            models.UniqueConstraint("user", Lower("name"), name="accounts_watchlist_user_name_ci_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.user}: {self.name}"


class WatchlistItem(BaseModel):
    """One instrument on a watchlist, at a position (lower first)."""

    watchlist = models.ForeignKey(Watchlist, on_delete=models.CASCADE, related_name="items")
    instrument = models.ForeignKey("instruments.Instrument", on_delete=models.CASCADE, related_name="watchlist_items")
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["watchlist", "position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["watchlist", "instrument"], name="accounts_watchlist_unique_instrument"),
        ]

    def __str__(self) -> str:
        return f"{self.watchlist.name}: {self.instrument_id}"
