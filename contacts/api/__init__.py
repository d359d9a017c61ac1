"""The contacts part of the REST API: customers and social identities."""
