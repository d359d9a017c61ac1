"""The OpenAPI schema validates, and the schema and docs pages are served."""

from __future__ import annotations

import io
import re

import pytest
import yaml
from django.core.management import call_command

pytestmark = pytest.mark.django_db


def test_the_schema_validates_without_warnings(tmp_path):
    target = tmp_path / "schema.yaml"

    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target), stderr=io.StringIO())

    schema = yaml.safe_load(target.read_text())
    assert schema["openapi"].startswith("3.")
    paths = schema["paths"]
    for path in ["/api/v1/customers/", "/api/v1/customers/{id}/", "/api/v1/customers/{customer_pk}/timeline/",
                 "/api/v1/social-identities/", "/api/v1/conversations/{id}/assign/",
                 "/api/v1/conversations/{conversation_pk}/replies/", "/api/v1/interactions/",
                 "/api/v1/channel-accounts/{id}/", "/api/v1/webhook-deliveries/{id}/replay/"]:
        assert path in paths
    assert schema["components"]["securitySchemes"]["ApiToken"]["scheme"] == "bearer"
    secrets = str(schema["components"]["schemas"]["ChannelAccount"])
    assert "credentials" not in secrets.replace("has_credentials", "")
    assert "writeOnly" in str(schema["components"]["schemas"]["ChannelAccountCreateInputRequest"])


def test_the_schema_and_the_docs_page_are_public(client):
    schema = client.get("/api/v1/schema/")
    docs = client.get("/api/v1/docs/")

    assert schema.status_code == 200
    assert b"openapi: 3" in schema.content
    assert docs.status_code == 200
    assert b"swagger-ui" in docs.content.lower()
    # Swagger UI's script and styles come from this server, never a CDN.
    assets = re.findall(rb'(?:src|href)="([^"]+)"', docs.content)
    assert any(b"swagger-ui-bundle" in a for a in assets)
    assert all(a.startswith(b"/") for a in assets if a.endswith((b".js", b".css")))
    bundle = next(a for a in assets if b"swagger-ui-bundle" in a).decode()
    assert client.get(bundle).status_code == 200
