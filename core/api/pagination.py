"""Limit/offset pagination that refuses bad values instead of quietly ignoring them.

DRF's stock ``LimitOffsetPagination`` falls back to the default for ``limit=abc`` and clamps a
huge limit to the maximum, so a client never learns that it asked for something else. Here a
non-integer, a limit below 1 or above ``max_limit`` and a negative offset answer 400 in the
error format.
"""

from __future__ import annotations

from rest_framework import pagination
from rest_framework.exceptions import ValidationError


class LimitOffsetPagination(pagination.LimitOffsetPagination):
    """``?limit=`` (default 100, at most 1000) and ``?offset=`` (default 0), validated."""

    default_limit = 100
    max_limit = 1000

    @staticmethod
    def _integer(request, name: str) -> int | None:
        raw = request.query_params.get(name)
        if raw is None or raw == "":
            return None
        try:
            return int(raw)
        except ValueError:
            raise ValidationError({name: [f"A whole number is required, got {raw!r}."]}) from None

    def get_schema_operation_parameters(self, view) -> list[dict]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.limit_query_param:
                parameter["description"] = f"Rows per page: 1 to {self.max_limit}, default {self.default_limit}."
                parameter["schema"].update(minimum=1, maximum=self.max_limit, default=self.default_limit)
            elif parameter["name"] == self.offset_query_param:
                parameter["description"] = "Rows to skip, 0 or more."
                parameter["schema"].update(minimum=0, default=0)
        return parameters

    def get_limit(self, request) -> int:
        limit = self._integer(request, self.limit_query_param)
        if limit is None:
            return self.default_limit
        if limit < 1:
            raise ValidationError({self.limit_query_param: ["Must be at least 1."]})
        if limit > self.max_limit:
            raise ValidationError({self.limit_query_param: [f"Must be at most {self.max_limit}; page with offset."]})
        return limit

    def get_offset(self, request) -> int:
        offset = self._integer(request, self.offset_query_param)
        if offset is None:
            return 0
        if offset < 0:
            raise ValidationError({self.offset_query_param: ["Must be 0 or more."]})
        return offset
