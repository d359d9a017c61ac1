"""Trigram indexes (pg_trgm) that a database without the extension goes without.

pg_trgm ships with PostgreSQL's contrib package, which every server image and distribution package carries
(docker-compose's postgres:16, Debian's postgresql), but the embedded PostgreSQL that `./dev` starts when no
database is configured (the `pgserver` wheel) has no contrib extensions. There the trigram indexes are left out
and searches that would use them read the table instead: the same results, slower on large data, which a
development database does not have. Migrations add these indexes through `trigram_indexes`, so that Django's
model state always holds them while the database gets them only where pg_trgm can be created.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from django.db import migrations
from django.db.models import Index

logger = logging.getLogger(__name__)


def trigram_available(schema_editor) -> bool:
    """Whether pg_trgm is installed in the database, or can be."""
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm')")
        return bool(cursor.fetchone()[0])


def trigram_indexes(app_label: str, indexes: Sequence[tuple[str, Index]]) -> migrations.SeparateDatabaseAndState:
    """A migration operation adding `indexes` ((model name, index) pairs) to the model state always, and to the
    database, built concurrently (the migration must not be atomic), where pg_trgm is available."""

    def forward(apps, schema_editor) -> None:
        if not trigram_available(schema_editor):
            logger.warning("pg_trgm is not available in this PostgreSQL: %s go without trigram indexes (searches "
                           "read the tables instead)", ", ".join(index.name for _, index in indexes))
            return
        schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        for model_name, index in indexes:
            schema_editor.add_index(apps.get_model(app_label, model_name), index, concurrently=True)

    def backward(apps, schema_editor) -> None:
        for model_name, index in indexes:
            schema_editor.remove_index(apps.get_model(app_label, model_name), index, concurrently=True)

    return migrations.SeparateDatabaseAndState(
        state_operations=[migrations.AddIndex(model_name=model_name, index=index) for model_name, index in indexes],
        database_operations=[migrations.RunPython(forward, backward, elidable=False)],
    )


def trigram_indexes_removed(app_label: str,
                            indexes: Sequence[tuple[str, Index]]) -> migrations.SeparateDatabaseAndState:
    """The reverse of `trigram_indexes`: `indexes` leave the model state always, and the database (concurrently,
    outside a transaction) where they exist; going back adds them again where pg_trgm is available."""
    added = trigram_indexes(app_label, indexes)
    add = added.database_operations[0].code

    def drop(apps, schema_editor) -> None:
        for _, index in indexes:
            schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {schema_editor.quote_name(index.name)}")

    return migrations.SeparateDatabaseAndState(
        state_operations=[migrations.RemoveIndex(model_name=model_name, name=index.name)
                          for model_name, index in indexes],
        database_operations=[migrations.RunPython(drop, add, elidable=False)],
    )
