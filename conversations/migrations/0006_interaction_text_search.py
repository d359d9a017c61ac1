# The trigram index behind the console's first message text search (`text__icontains`, run by PostgreSQL as
# UPPER(text) LIKE UPPER('%...%')); replaced by the words of the text in 0008 and 0009. Built concurrently, so
# writes to the interactions table go on meanwhile; that needs a migration outside a transaction. A database
# without pg_trgm goes without it (socialcrm/trigram.py).

from django.contrib.postgres.indexes import GinIndex, OpClass
from django.db import migrations
from django.db.models.functions import Upper

from socialcrm.trigram import trigram_indexes


class Migration(migrations.Migration):

    atomic = False

    dependencies = [
        ('conversations', '0005_canned_responses'),
    ]

    operations = [
        trigram_indexes('conversations', [
            ('interaction', GinIndex(OpClass(Upper('text'), name='gin_trgm_ops'), name='interaction_text_trgm_idx')),
        ]),
    ]
