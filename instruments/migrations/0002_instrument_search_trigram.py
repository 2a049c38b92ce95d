"""Trigram indexes for instrument search (``instruments/search.py``), PostgreSQL only.

``pg_trgm`` and three GIN indexes on ``UPPER(symbol)``, ``UPPER(name)`` and ``UPPER(isin)``
with ``gin_trgm_ops``: the expressions Django's ``icontains`` compares on PostgreSQL. On any
other database (SQLite, the embedded mode) both operations do nothing and the search is a
``LIKE`` scan. The indexes are not in ``Instrument.Meta.indexes`` on purpose: SQLite rebuilds
a table with every index the model state lists, and cannot create a GIN index.
"""

from django.contrib.postgres.operations import TrigramExtension
from django.db import migrations

INDEXES = (
    ("instruments_symbol_upper_trgm", "symbol"),
    ("instruments_name_upper_trgm", "name"),
    ("instruments_isin_upper_trgm", "isin"),
)


# Plain SQL: Django renders ``OpClass`` inside an index expression only with
# ``django.contrib.postgres`` installed, which nothing else here needs.
def create_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    table = schema_editor.quote_name(apps.get_model("instruments", "Instrument")._meta.db_table)
    for name, column in INDEXES:
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {schema_editor.quote_name(name)} ON {table} "
            f"USING gin (UPPER({schema_editor.quote_name(column)}) gin_trgm_ops)"
        )


def drop_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, _column in INDEXES:
        schema_editor.execute(f"DROP INDEX IF EXISTS {schema_editor.quote_name(name)}")


class KeepTrigramExtension(TrigramExtension):
    """``CREATE EXTENSION pg_trgm`` on PostgreSQL (``CreateExtension`` skips other databases).

    Unapplying leaves the extension installed: other code may use it, and on a database other
    than PostgreSQL there is nothing to drop.
    """

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        pass


class Migration(migrations.Migration):
    dependencies = [
        ("instruments", "0001_initial"),
    ]

    operations = [
        KeepTrigramExtension(),
        migrations.RunPython(create_indexes, drop_indexes, elidable=False),
    ]
