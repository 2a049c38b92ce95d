import pytest
from django.db import IntegrityError

pytestmark = pytest.mark.django_db


def test_duplicate_email_rejected_case_insensitively(django_user_model):
    django_user_model.objects.create_user(email="a@example.com", password="x-12345678")
    with pytest.raises(IntegrityError):
        django_user_model.objects.create(email="A@example.com")


def test_email_is_login(django_user_model, client):
    django_user_model.objects.create_user(email="Login@Example.com", password="secret-pw-123")
    assert client.login(email="login@example.com", password="secret-pw-123")


def test_superuser_is_admin(superuser, user):
    assert superuser.is_admin
    assert not user.is_admin
