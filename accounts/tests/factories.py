"""factory_boy factories for the accounts app."""

import factory

from accounts.models import User

DEFAULT_PASSWORD = "correct-Horse-battery-9"


class UserFactory(factory.django.DjangoModelFactory):
    """A user with the ``user`` role and the password ``DEFAULT_PASSWORD``."""

    class Meta:
        model = User

    email = factory.Sequence(lambda n: f"user{n}@example.com")
    first_name = factory.Faker("first_name")
    last_name = factory.Faker("last_name")
    role = User.Role.USER
    password = DEFAULT_PASSWORD

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        # The manager hashes the password and normalizes the email.
        return model_class.objects.create_user(*args, **kwargs)
