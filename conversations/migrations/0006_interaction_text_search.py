# The trigram index behind the console's message text search (`text__icontains`, run by PostgreSQL as
# UPPER(text) LIKE UPPER('%...%')). Built concurrently, so writes to the interactions table go on meanwhile; that
# needs a migration outside a transaction. pg_trgm is created here too (IF NOT EXISTS), not borrowed from contacts.

from django.contrib.postgres.indexes import GinIndex, OpClass
from django.contrib.postgres.operations import AddIndexConcurrently, TrigramExtension
from django.db import migrations
from django.db.models.functions import Upper


class Migration(migrations.Migration):

    atomic = False

    dependencies = [
        ('conversations', '0005_canned_responses'),
    ]

    operations = [
        TrigramExtension(),
        AddIndexConcurrently(
            model_name='interaction',
            index=GinIndex(OpClass(Upper('text'), name='gin_trgm_ops'), name='interaction_text_trgm_idx'),
        ),
    ]
