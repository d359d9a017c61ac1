# Trigram indexes for customer search (contacts.api.selectors.customers_search), built CONCURRENTLY (customers,
# identities and contact points are big tables), outside a transaction. pg_trgm ships with PostgreSQL's contrib
# package and is a trusted extension (13+): the database owner may create it, no superuser needed. A database
# without it (./dev's embedded PostgreSQL) goes without these indexes: see socialcrm/trigram.py.

import django.contrib.postgres.indexes
import django.db.models.functions.text
from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models

from socialcrm.trigram import trigram_indexes


def _trigrams(expression, name):
    return django.contrib.postgres.indexes.GinIndex(
        django.contrib.postgres.indexes.OpClass(expression, name='gin_trgm_ops'), name=name)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ('contacts', '0006_dedupe_queue'),
    ]

    operations = [
        trigram_indexes('contacts', [
            ('contactpoint', _trigrams('normalized', 'contactpoint_trgm_idx')),
            ('customer', _trigrams(django.db.models.functions.text.Upper('display_name'), 'customer_name_trgm_idx')),
            ('socialidentity', _trigrams(django.db.models.functions.text.Upper('display_name'),
                                         'identity_name_trgm_idx')),
            ('socialidentity', _trigrams(django.db.models.functions.text.Upper('handle'), 'identity_handle_trgm_idx')),
        ]),
        AddIndexConcurrently(
            model_name='socialidentity',
            index=models.Index(fields=['external_id'], name='identity_external_id_idx'),
        ),
    ]
