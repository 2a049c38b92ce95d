"""Shared API plumbing: the one error format, role permissions, pagination, schema helpers."""
