"""The one normalized shape every provider's data takes inside the platform.

The type itself belongs to the live-data contract (``marketdata.live.types``), which the
serving side reads; providers import it from here and know nothing else above it.
"""

from marketdata.live.types import Tick

__all__ = ["Tick"]
