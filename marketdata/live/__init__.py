"""The live-data contract: value types, channel names and payloads, the tick store, the hub.

The feed side (``ingestion``) writes through it; the serving side (``marketdata``) reads it.
Nothing here knows a provider.
"""
