"""Abstract base shared by every model of the project."""

from django.db import models


class BaseModel(models.Model):
    """Audit timestamps and a soft on/off switch."""

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    is_active = models.BooleanField(default=True, db_index=True)

    class Meta:
        abstract = True
