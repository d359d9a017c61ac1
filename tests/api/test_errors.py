"""One error shape for everything the API refuses; throttling per token."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from socialcrm.api.errors import flatten_field_errors
from tests.api.conftest import assert_error

pytestmark = pytest.mark.django_db


def test_an_unknown_api_path_is_a_404_in_the_error_shape(world, client_for):
    client = client_for(world.admin)

    assert_error(client.get("/api/v1/nothing-here/"), 404, "not_found")
    assert_error(client.get("/api/v1/customers/12345678901234567890/"), 404, "not_found")
    assert_error(client.get("/api/v1/customers/abc/"), 404, "not_found")


def test_an_unsupported_method_is_a_405_with_allow(world, client_for):
    response = client_for(world.admin).put(f"/api/v1/customers/{world.a.customer.pk}/", {})

    assert_error(response, 405, "method_not_allowed")
    assert "PATCH" in response.headers["Allow"]


def test_a_body_that_is_not_json_is_a_415(world, client_for):
    response = client_for(world.admin).post("/api/v1/customers/", "display_name=x",
                                            content_type="application/x-www-form-urlencoded")

    assert_error(response, 415, "unsupported_media_type")


def test_malformed_json_is_a_400(world, client_for):
    response = client_for(world.admin).post("/api/v1/customers/", "{nope", content_type="application/json")

    assert_error(response, 400, "parse_error")


def test_an_unknown_field_is_a_400_naming_it(world, client_for):
    response = client_for(world.admin).patch(f"/api/v1/customers/{world.a.customer.pk}/",
                                             {"display_name": "Erika", "merged_into": 1})

    assert_error(response, 400, "invalid", field="merged_into")
    world.a.customer.refresh_from_db()
    assert world.a.customer.display_name == "Kunde alpha"


@pytest.mark.parametrize(("body", "field"), [
    ({"display_name": 5}, "display_name"),
    ({"display_name": "x" * 256}, "display_name"),
    ({"tags": "vip"}, "tags"),
    ({"tags": ["ok", "bad\x07tag"]}, "tags.1"),
    ({"birth_date": "2999-01-01"}, "birth_date"),
    ({"notes": "nul\x00byte"}, "notes"),
])
def test_bad_input_is_a_400_naming_the_field(world, client_for, body, field):
    response = client_for(world.admin).patch(f"/api/v1/customers/{world.a.customer.pk}/", body)

    assert_error(response, 400, "invalid", field=field)


def test_a_service_error_keeps_its_code_and_field(world, client_for):
    response = client_for(world.a.agent).post(f"/api/v1/conversations/{world.a.conversation.pk}/replies/",
                                              {"text": "x" * 281})

    assert_error(response, 400, "reply_too_long", field="text")


def test_nested_field_errors_are_flattened_with_dotted_names():
    detail = {"a": ["top"], "b": {"c": ["inner"]}, "d": [{}, {"e": ["deep"]}], "non_field_errors": ["whole"]}

    assert flatten_field_errors(detail) == {
        "a": ["top"], "b.c": ["inner"], "d.1.e": ["deep"], "non_field_errors": ["whole"],
    }


def test_a_token_over_its_rate_is_a_429_with_retry_after_and_other_tokens_go_on(world, token_for, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"token": "3/minute"}}
    busy, other = APIClient(), APIClient()
    busy.credentials(HTTP_AUTHORIZATION=f"Bearer {token_for(world.a.agent)}")
    other.credentials(HTTP_AUTHORIZATION=f"Bearer {token_for(world.a.agent)}")

    answers = [busy.get("/api/v1/customers/").status_code for _ in range(4)]

    assert answers == [200, 200, 200, 429]
    response = busy.get("/api/v1/customers/")
    assert_error(response, 429, "throttled")
    assert 0 < int(response.headers["Retry-After"]) <= 60
    assert other.get("/api/v1/customers/").status_code == 200


def test_a_malformed_rate_limit_setting_stops_the_start_with_its_reason():
    import os
    import subprocess
    import sys

    env = {**os.environ, "API_RATE_LIMIT": "lots/minute"}
    done = subprocess.run([sys.executable, "-c", "import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', "
                           "'socialcrm.settings'); django.setup()"], env=env, capture_output=True, text=True,
                          timeout=60)

    assert done.returncode != 0
    assert "API_RATE_LIMIT must look like 1200/minute" in done.stderr
