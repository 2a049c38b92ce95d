"""The seed's suggestions: signed-in users suggest instruments or features, admins review them.

The one model of the compat surface (the seed feature has no counterpart in marketapp). A
``SuggestionType`` is a category admins maintain (``name`` unique regardless of case); a
``Suggestion`` belongs to the user who made it, and an admin moves its ``status`` from
``pending`` to ``approved``, ``rejected`` or ``implemented`` (the states the seed front end
styles). A type that suggestions still use cannot be deleted (``PROTECT``).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models.functions import Lower

from core.models import BaseModel


class SuggestionType(BaseModel):
    """What a suggestion is about (New instrument, Feature, Bug, ...)."""

    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)

    class Meta:
        ordering = ["name", "pk"]
        constraints = [models.UniqueConstraint(Lower("name"), name="seedcompat_suggestion_type_name_ci_unique")]

    def __str__(self) -> str:
        return self.name


class Suggestion(BaseModel):
    """One user's suggestion and its review state."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"
        IMPLEMENTED = "implemented", "Implemented"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="seed_suggestions")
    suggestion_type = models.ForeignKey(SuggestionType, on_delete=models.PROTECT, related_name="suggestions")
    title = models.CharField(max_length=200)
    description = models.TextField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return self.title
