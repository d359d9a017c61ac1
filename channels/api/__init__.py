"""The channels part of the REST API: channel accounts, webhook deliveries, and the actions that send
(replies to conversations, retries of failed replies)."""
