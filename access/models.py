"""Teams (who sees which channel accounts) and API tokens (stored hashed, with scopes).

This app imports no code of ours but `socialcrm`: the channel accounts of a team are referenced by model
label ("channels.ChannelAccount"), like conversations reference them.
"""

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q

from socialcrm.models import TimeStampedModel


class Team(TimeStampedModel):
    """A group of agents that sees only some channel accounts, and what arrived on them."""

    name = models.CharField(max_length=100, unique=True)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="teams", blank=True)
    channel_accounts = models.ManyToManyField("channels.ChannelAccount", related_name="teams", blank=True)

    class Meta:
        permissions = [
            ("view_all_channels", "Can see every channel account and customer, whatever the teams"),
            ("merge_customers", "Can merge customers and undo merges"),
            ("handle_gdpr_requests", "Can export and erase a customer's data (GDPR)"),
        ]

    def __str__(self) -> str:
        return self.name


class Scope(models.TextChoices):
    """What an API token may do. Scopes are independent: `write` does not include `read`."""

    READ = "read", "Read"
    WRITE = "write", "Write"
    MERGE = "merge", "Merge and unmerge customers"
    GDPR = "gdpr", "GDPR export and erasure"
    ADMIN = "admin", "Administer channel accounts and webhook deliveries"


class ApiToken(models.Model):
    """A bearer token for another system, acting as `user` within `scopes`.

    The token itself (`scrm_<prefix>_<secret>`) is shown once, when it is created; the database keeps only
    its public `prefix` (for the lookup) and the SHA-256 of the whole token. The secret carries 256 random
    bits, so a fast hash is enough: there is nothing to guess.
    """

    name = models.CharField(max_length=100)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    token_hash = models.CharField(max_length=64, editable=False)
    scopes = ArrayField(models.CharField(max_length=16, choices=Scope.choices), default=list)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Refused from this time on; empty: never.")
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name = "API token"
        constraints = [
            models.CheckConstraint(
                condition=Q(scopes__contained_by=Scope.values), name="apitoken_known_scopes",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} (scrm_{self.prefix}_…)"
