"""The conversations part of the REST API: conversations (assign, status, notes, tags), interactions and
customer timelines.

Importing this package tells contacts which identities a restricted user sees: those with a conversation on
the user's channel accounts (`conversations.selectors.identities_in_view_of_accounts`). The API's URLconf
imports it before any API request is served.
"""

from contacts.api.selectors import register_identity_scope
from conversations.selectors import identities_in_view_of_accounts

register_identity_scope(identities_in_view_of_accounts)
