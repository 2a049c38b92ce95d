"""Provider feed clients: one module per provider kind, one interface (``base.FeedClient``)."""
