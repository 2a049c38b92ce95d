"""Bars keep their provider as a plain id: price history knows no feed (``ingestion`` owns providers).

The column, its values and (on the daily table) its index stay; only the foreign-key constraint
goes, and the model state trades the relation for a plain integer field.
"""

import django.db.models.deletion
from django.db import migrations, models


def _source(**kwargs):
    return models.ForeignKey(
        blank=True,
        null=True,
        db_constraint=False,
        on_delete=django.db.models.deletion.SET_NULL,
        related_name="+",
        to="ingestion.provider",
        **kwargs,
    )


class Migration(migrations.Migration):
    dependencies = [
        ("ingestion", "0002_populate_job"),
        ("marketdata", "0003_lean_intraday_indexes"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.AlterField(model_name="pricehistoryintraday", name="source", field=_source(db_index=False)),
                migrations.AlterField(model_name="pricehistorydaily", name="source", field=_source()),
            ],
            state_operations=[
                migrations.RemoveField(model_name="pricehistoryintraday", name="source"),
                migrations.AddField(
                    model_name="pricehistoryintraday",
                    name="source_id",
                    field=models.BigIntegerField(blank=True, null=True),
                ),
                migrations.RemoveField(model_name="pricehistorydaily", name="source"),
                migrations.AddField(
                    model_name="pricehistorydaily",
                    name="source_id",
                    field=models.BigIntegerField(
                        blank=True, db_index=True, help_text="Provider id (see intraday).", null=True
                    ),
                ),
            ],
        ),
    ]
