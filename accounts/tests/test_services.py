"""Service-level properties that the API tests cannot reach easily."""

import threading

import pytest
from django.db import connection
from rest_framework_simplejwt.exceptions import InvalidToken
from rest_framework_simplejwt.tokens import RefreshToken

from accounts import services
from accounts.tests.factories import UserFactory


@pytest.mark.django_db(transaction=True)
def test_concurrent_refreshes_with_one_token_yield_one_new_pair():
    refresh = str(RefreshToken.for_user(UserFactory()))
    workers = 4
    barrier = threading.Barrier(workers)
    outcomes: list[str] = []
    lock = threading.Lock()

    def attempt() -> None:
        barrier.wait()
        try:
            services.user_tokens_refresh(refresh=refresh)
            outcome = "ok"
        except InvalidToken:
            outcome = "refused"
        finally:
            connection.close()
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=attempt) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(outcomes) == ["ok"] + ["refused"] * (workers - 1)


@pytest.mark.django_db
def test_user_update_saves_only_given_fields():
    user = UserFactory(first_name="Ada", last_name="Byron")

    services.user_update(user=user, last_name="Lovelace")

    user.refresh_from_db()
    assert (user.first_name, user.last_name) == ("Ada", "Lovelace")


@pytest.mark.django_db
def test_profile_picture_ignores_empty_url():
    user = UserFactory(profile_picture_url="https://lh3.googleusercontent.com/a/old")

    services.user_profile_picture_set(user=user, url="")

    user.refresh_from_db()
    assert user.profile_picture_url == "https://lh3.googleusercontent.com/a/old"
