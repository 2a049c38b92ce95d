"""The compat routes answer a body that is not an object with the documented 400, never a 5xx.

The compat surface has no OpenAPI schema, so this walks its URL patterns: every view with a
``post``, ``put`` or ``patch`` gets the bodies of ``marketapp/tests/test_bad_input.py`` as an
admin, with real ids in the path.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.core.cache import cache

from marketapp.tests import test_bad_input as bad
from seedcompat import urls

world = bad.world  # the same fixture: the demo data, one of everything a path names, an admin's client

_GROUP = re.compile(r"\(\?P<(\w+)>[^)]*\)")


def _routes() -> list[tuple[str, str]]:
    """(method, regex) of every compat operation that takes a body."""
    found = []
    for pattern in urls.urlpatterns:
        view = pattern.callback.view_class
        found += [(method, str(pattern.pattern)) for method in ("post", "put", "patch") if hasattr(view, method)]
    return found


def _url(regex: str, objects: dict[str, Any]) -> str:
    """``^instrument/(?P<pk>[0-9]{1,18})/?$`` -> ``/seed/instrument/<a real instrument id>``."""
    path = regex.removeprefix("^").removesuffix("$").removesuffix("/?")
    first = path.split("/")[0]
    by_pk = {"instrument": "instrument", "sector": "sector", "instrument_type": "instrument_type"}
    pk_of = "suggestion_type" if path.startswith("suggestions/types/") else by_pk.get(first, "suggestion")
    ids = {
        "pk": objects[pk_of].pk,
        "user_id": objects["viewer"].pk,
        "holiday_id": objects["holiday"].pk,
        "exchange_id": objects["exchange_mapping"].exchange_id,
        "provider_id": objects["exchange_mapping"].provider_id if first == "exchange" else objects["provider"].pk,
        "watchlist_id": objects["watchlist"].pk,
    }
    return "/seed/" + _GROUP.sub(lambda m: str(ids[m.group(1)]), path)


@pytest.mark.parametrize(("label", "content_type", "raw", "want_400"), bad.BODIES, ids=[b[0] for b in bad.BODIES])
def test_every_compat_operation_answers_a_bad_body_with_the_documented_400(world, label, content_type, raw, want_400):
    client = world["client"]
    routes = _routes()
    assert len(routes) >= 30
    failures = []
    for method, regex in routes:
        cache.clear()  # the sign-in throttle must not answer first
        url = _url(regex, world)
        response = client.generic(method.upper(), url, raw, content_type=content_type)
        if problem := bad.error_problem(response, want_400=want_400):
            failures.append(f"{method.upper()} {url}: {problem}")
    assert not failures, "\n".join(failures)
