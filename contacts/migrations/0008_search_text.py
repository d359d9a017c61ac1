# Customer search on one denormalised string per customer (`Customer.search_text`, see contacts/search.py): the
# column, its backfill in one set-based UPDATE (the expression `customers_search_text_refresh` uses), its trigram
# index, and the removal of the trigram indexes on names and handles it replaces (ingest writes fewer indexes). The
# contact points' trigram index stays: phone numbers are still searched by their ending. Not atomic: the indexes
# are built and dropped CONCURRENTLY.

import django.contrib.postgres.indexes
import django.db.models.functions.text
from django.db import migrations, models

from contacts.search import SEARCH_TEXT_SQL
from socialcrm.trigram import trigram_indexes, trigram_indexes_removed


def _trigrams(expression, name):
    return django.contrib.postgres.indexes.GinIndex(
        django.contrib.postgres.indexes.OpClass(expression, name='gin_trgm_ops'), name=name)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ('contacts', '0007_search_indexes'),
    ]

    operations = [
        migrations.AddField(
            model_name='customer',
            name='search_text',
            field=models.TextField(blank=True, db_default='', default='', editable=False),
        ),
        migrations.RunSQL(
            f'UPDATE contacts_customer c SET search_text = {SEARCH_TEXT_SQL}',
            migrations.RunSQL.noop, elidable=False,
        ),
        trigram_indexes('contacts', [
            ('customer', _trigrams('search_text', 'customer_search_trgm_idx')),
        ]),
        trigram_indexes_removed('contacts', [
            ('customer', _trigrams(django.db.models.functions.text.Upper('display_name'), 'customer_name_trgm_idx')),
            ('socialidentity', _trigrams(django.db.models.functions.text.Upper('display_name'),
                                         'identity_name_trgm_idx')),
            ('socialidentity', _trigrams(django.db.models.functions.text.Upper('handle'), 'identity_handle_trgm_idx')),
        ]),
    ]
