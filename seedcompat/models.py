"""The seed's suggestions (users suggest instruments or features; admins review them)."""
