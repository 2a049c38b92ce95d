from django.apps import AppConfig


class ExchangesConfig(AppConfig):
    name = "exchanges"
    verbose_name = "Exchanges"

    def ready(self) -> None:
        from core.db import connect_pool_guard

        # The lowest installed app: a pooled connection goes back when its thread ends.
        connect_pool_guard()
