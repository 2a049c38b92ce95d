"""Query-string filters of the admin user list."""

from __future__ import annotations

import django_filters
from django.db.models import Q, QuerySet

from core.api.params import StrictBooleanFilter

from .models import User


class UserFilter(django_filters.FilterSet):
    """The filters of ``GET /users/``; an unknown status or role is a 400, not "no filter"."""

    status = django_filters.ChoiceFilter(choices=User.Status.choices, help_text="pending, approved or rejected.")
    role = django_filters.ChoiceFilter(choices=User.Role.choices, help_text="admin or user.")
    is_active = StrictBooleanFilter(field_name="is_active", help_text="true or false.")
    search = django_filters.CharFilter(
        method="filter_search", help_text="Part of the email, first or last name, any case."
    )

    class Meta:
        model = User
        fields = ["status", "role", "is_active", "search"]

    def filter_search(self, queryset: QuerySet[User], name: str, value: str) -> QuerySet[User]:
        value = value.strip()
        if not value:
            return queryset
        return queryset.filter(
            Q(email__icontains=value) | Q(first_name__icontains=value) | Q(last_name__icontains=value)
        )
