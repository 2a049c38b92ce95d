from django.apps import AppConfig


class SeedcompatConfig(AppConfig):
    name = "seedcompat"
    verbose_name = "Seed compatibility"
