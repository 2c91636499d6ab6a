"""Schemathesis against /api/schema/ (the REST API and the /v1 proxy) on the live server: a fixed seed, a key
whose plan has no rate limits or cap, and no 5xx or schema-breaking answer allowed."""

import subprocess
import sys

import httpx
import pytest

from tests.factories import MembershipFactory, PlanFactory, TenantFactory, UserFactory, make_api_key

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,"
          "response_headers_conformance")


@pytest.fixture
def unlimited_key(live_db):
    plan = PlanFactory(slug="fuzz-unlimited", allowed_tiers=["auto", "max"])  # no RPM/TPM limits, no cap
    tenant = TenantFactory(slug="fuzz", plan=plan)
    user = UserFactory(email="fuzz@example.test")
    MembershipFactory(user=user, tenant=tenant, role="admin")
    return make_api_key(tenant=tenant, user=user)[1]


def test_schema_is_served_with_every_path_and_a_docs_page(server):
    schema = httpx.get(f"{server.url}/api/schema/?format=json").json()
    for path in ("/v1/chat/completions", "/v1/messages", "/v1/models", "/api/conversations/",
                 "/api/conversations/{conversation_id}/messages/", "/api/messages/{message_id}/", "/api/usage/",
                 "/api/invoices/", "/api/invoices/{invoice_id}/"):
        assert path in schema["paths"], path
    for operations in schema["paths"].values():
        for operation in operations.values():
            assert operation["responses"], operation.get("operationId")
    docs = httpx.get(f"{server.url}/api/docs/")
    assert docs.status_code == 200 and "swagger-ui" in docs.text
    assert "cdn" not in docs.text.lower()


def test_fuzzing_finds_no_server_error_and_no_schema_breaking_answer(server, unlimited_key, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "run", f"{server.url}/api/schema/?format=json",
         "--url", server.url, "--header", f"Authorization: Bearer {unlimited_key}",
         "--seed", "20261126", "--max-examples", "15", "--workers", "1", "--generation-database", "none",
         "--checks", CHECKS, "--request-timeout", "20", "--no-color", "--phases", "examples,coverage,fuzzing"],
        cwd=tmp_path, capture_output=True, text=True, timeout=580,
    )
    (tmp_path / "out.txt").write_text(result.stdout + result.stderr)
    assert result.returncode == 0, result.stdout[-12000:] + result.stderr[-2000:]
