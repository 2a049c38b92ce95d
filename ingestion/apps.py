from django.apps import AppConfig


class IngestionConfig(AppConfig):
    name = "ingestion"
    verbose_name = "Ingestion"

    def ready(self) -> None:
        # The feed side fills in the lower apps' extension points (they never import it):
        # the instrument importer writes each row's provider mappings through this extension,
        # and the price-history receivers keep bars' source ids consistent with providers.
        from instruments.importers import extensions

        from . import signals  # noqa: F401 - connects the receivers
        from .seeding import ProviderMappingExtension

        extensions.register(ProviderMappingExtension)
