# Message text search moves from trigrams of UPPER(text) to the words of the text (to_tsvector('simple', text)):
# word and word-prefix queries, which is what agents type, for a fraction of the trigram index's cost on every
# ingest (bench/ingest.py). Built concurrently, so writes to the interactions table go on meanwhile; that needs a
# migration outside a transaction. pg_trgm stays: the customer search (contacts) uses it.

import django.contrib.postgres.indexes
import django.contrib.postgres.search
from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import migrations


class Migration(migrations.Migration):

    atomic = False

    dependencies = [
        ('conversations', '0007_inbox_counts_index'),
    ]

    operations = [
        RemoveIndexConcurrently(
            model_name='interaction',
            name='interaction_text_trgm_idx',
        ),
        AddIndexConcurrently(
            model_name='interaction',
            index=django.contrib.postgres.indexes.GinIndex(
                django.contrib.postgres.search.SearchVector('text', config='simple'),
                name='interaction_text_words_idx',
            ),
        ),
    ]
