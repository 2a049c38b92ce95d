from django.apps import AppConfig


class MarketdataConfig(AppConfig):
    name = "marketdata"
    verbose_name = "Marketdata"

    def ready(self) -> None:
        from instruments.services import register_delete_guard

        from . import schema  # noqa: F401 - registers the OpenAPI authentication extension
        from .services import instrument_history_counts

        # An instrument with stored bars is not deleted through the API (instruments asks us).
        register_delete_guard(instrument_history_counts)
