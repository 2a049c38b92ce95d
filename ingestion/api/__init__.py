"""REST API of the ingestion app.

``providers`` (``/providers/``, admin only) with the stream controls of ``streams``
(``/providers/{id}/start``, ``/stop``, ``/status``), ``mappings`` (``/providers/{id}/instruments``
and ``/exchange/{id}/providers``) on the shared CRUD base of ``crud``, and ``populate``
(``/populate/...``, the database population jobs).
"""
