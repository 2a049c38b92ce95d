"""Request body parsers: a JSON body is an object, or the request is a 400.

DRF's ``JSONParser`` hands views whatever the JSON holds, so ``request.data`` may be ``None``, a
list, a string or a number, and a view that reads it as a dict (``"url" in request.data``)
fails with a 500. ``JSONObjectParser`` (the project default, ``REST_FRAMEWORK`` in settings)
refuses any other top level with the documented 400 before a view sees it. Form and multipart
bodies always parse to a dict. A view whose body is a JSON array would list DRF's own
``JSONParser`` in its ``parser_classes``; none does (``marketapp/tests/test_bad_input.py``
checks the schema).
"""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import ValidationError
from rest_framework.parsers import JSONParser

_JSON_TYPE_NAMES = {type(None): "null", list: "an array", str: "a string", bool: "a boolean", int: "a number"}


def json_type_name(value: Any) -> str:
    """How JSON calls the type of a parsed value (``null``, ``an array``, ...)."""
    return _JSON_TYPE_NAMES.get(type(value), "a number")


class JSONObjectParser(JSONParser):
    """``application/json`` whose top level must be an object; anything else is a 400 naming what came."""

    def parse(self, stream, media_type=None, parser_context=None) -> dict:
        data = super().parse(stream, media_type, parser_context)
        if not isinstance(data, dict):
            raise ValidationError({"non_field_errors": [f"Expected a JSON object, got {json_type_name(data)}."]})
        return data
