"""Serializer plumbing every app's API shares."""

from __future__ import annotations

from collections.abc import Mapping

from rest_framework import serializers


class StrictFieldsMixin:
    """Refuse body fields the serializer does not know: a 400 naming them, never silently dropped.

    DRF ignores unknown keys, so ``PATCH /auth/me {"password": ...}`` would answer 200 and change
    nothing. Put this mixin first in the bases of every input serializer. Read-only fields are
    unknown on input too (a client that sends ``id`` is told so). ``extra_input_names`` lists
    names accepted on input besides the fields (aliases a serializer maps itself).
    """

    extra_input_names: tuple[str, ...] = ()

    def to_internal_value(self, data):
        if isinstance(data, Mapping):
            writable = {name for name, field in self.fields.items() if not field.read_only}
            unknown = sorted(set(data) - writable - set(self.extra_input_names))
            if unknown:
                raise serializers.ValidationError(
                    {name: ["Unknown field: not accepted here."] for name in unknown}, code="unknown_field"
                )
        return super().to_internal_value(data)
