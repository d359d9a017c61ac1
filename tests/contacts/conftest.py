import pytest


@pytest.fixture
def agent(django_user_model):
    """A CRM agent who merges and unmerges (no password: hashing one costs a second per test)."""
    return django_user_model.objects.create_user(username="agent.anna")
