"""Every row of the error table, through both official SDKs: the status, the SDK's own exception class and
the protocol's error body (proxy/errors.py, docs/architecture.md "Proxy API")."""

import time
from decimal import Decimal

import anthropic
import openai
import pytest
import redis as redis_lib
from django.conf import settings

from billing.models import UsageRecord
from proxy.errors import ERROR_TABLE
from tenants.services import api_key_revoke, tenant_set_status
from tests.factories import MembershipFactory, PlanFactory, TenantFactory, UserFactory, make_api_key

pytestmark = pytest.mark.django_db(transaction=True)

HI = [{"role": "user", "content": "hi"}]


def _clients(server, key):
    return (openai.OpenAI(api_key=key, base_url=f"{server.url}/v1", max_retries=0, timeout=20),
            anthropic.Anthropic(api_key=key, base_url=server.url, max_retries=0, timeout=20))


def _both(server, key, *, model="auto", **extra):
    """Call both protocols; return the two exceptions raised."""
    oa, an = _clients(server, key)
    with pytest.raises(openai.APIStatusError) as o_info:
        oa.chat.completions.create(model=model, messages=HI, **extra.get("openai", {}))
    with pytest.raises(anthropic.APIStatusError) as a_info:
        an.messages.create(model=model, messages=HI, **{"max_tokens": 50, **extra.get("anthropic", {})})
    return o_info.value, a_info.value


def _check(errors, case, openai_class, anthropic_class):
    o_err, a_err = errors
    row = ERROR_TABLE[case]
    assert type(o_err) is openai_class and o_err.status_code == row.status
    assert o_err.body["type"] == row.openai_type and o_err.body["code"] == row.openai_code
    assert "Traceback" not in o_err.message
    assert isinstance(a_err, anthropic_class) and a_err.status_code == row.status
    assert a_err.body["type"] == "error" and a_err.body["error"]["type"] == row.anthropic_type


def _tenant_with_plan(**plan_fields):
    plan = PlanFactory(allowed_tiers=["auto", "max"], **plan_fields)
    tenant = TenantFactory(plan=plan)
    user = UserFactory()
    MembershipFactory(user=user, tenant=tenant, role="admin")
    return tenant, user, make_api_key(tenant=tenant, user=user)[1]


def test_wrong_key_is_401(server, live_db):
    _check(_both(server, "kc-not-a-real-key"), "auth", openai.AuthenticationError, anthropic.AuthenticationError)


def test_missing_key_is_401(server, live_db):
    import httpx

    for path in ("/v1/chat/completions", "/v1/messages"):
        response = httpx.post(server.url + path, json={"model": "auto", "messages": HI, "max_tokens": 5})
        assert response.status_code == 401


def test_revoked_key_is_refused_at_once_by_another_process(server, alice, acme):
    key, secret = make_api_key(tenant=acme, user=alice)
    oa, _ = _clients(server, secret)
    oa.chat.completions.create(model="auto", messages=HI)  # now cached in the server process
    api_key_revoke(api_key=key, actor=alice)
    _check(_both(server, secret), "auth", openai.AuthenticationError, anthropic.AuthenticationError)


def test_tier_not_in_plan_is_403(server, bob_key):
    _check(_both(server, bob_key, model="max"), "permission", openai.PermissionDeniedError,
           anthropic.PermissionDeniedError)


def test_naming_a_model_without_the_plan_allowing_it_is_403(server, alice_key):
    _check(_both(server, alice_key, model="claude-opus-4-6"), "permission", openai.PermissionDeniedError,
           anthropic.PermissionDeniedError)


def test_suspended_tenant_is_403(server, alice, acme, alice_key):
    tenant_set_status(tenant=acme, status="suspended", actor=alice)
    o_err, a_err = _both(server, alice_key)
    _check((o_err, a_err), "permission", openai.PermissionDeniedError, anthropic.PermissionDeniedError)
    assert "suspended" in o_err.message
    assert UsageRecord.objects.count() == 0


def test_unsupported_field_is_400(server, alice_key):
    _check(_both(server, alice_key, openai={"n": 2}, anthropic={"extra_body": {"top_k": 3}}), "invalid", openai.BadRequestError,
           anthropic.BadRequestError)


def test_body_over_the_limit_is_413(server, alice_key):
    big = "x" * (settings.PROXY_MAX_BODY_BYTES + 10)
    oa, an = _clients(server, alice_key)
    with pytest.raises(openai.APIStatusError) as o_info:
        oa.chat.completions.create(model="auto", messages=[{"role": "user", "content": big}])
    with pytest.raises(anthropic.APIStatusError) as a_info:
        an.messages.create(model="auto", max_tokens=5, messages=[{"role": "user", "content": big}])
    _check((o_info.value, a_info.value), "too_large", openai.APIStatusError, anthropic.ContentTooLargeError)


def test_rate_limit_is_429_with_retry_after(server):
    _tenant, _user, key = _tenant_with_plan(slug="tight", rpm_key=2)
    oa, an = _clients(server, key)
    oa.chat.completions.create(model="auto", messages=HI)
    an.messages.create(model="auto", max_tokens=5, messages=HI)
    o_err, a_err = _both(server, key)
    _check((o_err, a_err), "rate_limited", openai.RateLimitError, anthropic.RateLimitError)
    assert 1 <= int(o_err.response.headers["retry-after"]) <= 60
    assert "per minute for this API key" in o_err.message


def test_over_the_budget_cap_is_429_insufficient_quota_and_charges_nothing(server):
    key = _tenant_with_plan(slug="capped", monthly_cap=Decimal("0.01"))[2]
    # With no max_tokens the hold is priced at ROUTING_DEFAULT_MAX_TOKENS of output, over a one-cent cap.
    _check(_both(server, key, anthropic={"max_tokens": 4096}), "quota", openai.RateLimitError,
           anthropic.RateLimitError)
    assert UsageRecord.objects.count() == 0


def test_every_endpoint_failing_is_502_with_the_attempts_summarized(server, fake_provider, alice_key):
    for model in ("kimi-k2.5", "claude-haiku-4-5"):
        fake_provider.scenario(model, status=500)
    o_err, a_err = _both(server, alice_key)
    _check((o_err, a_err), "upstream_failed", openai.InternalServerError, anthropic.InternalServerError)
    assert "kimi-k2.5: error (server)" in o_err.message and "claude-haiku-4-5" in o_err.message
    assert UsageRecord.objects.count() == 0


def test_every_breaker_open_is_503_overloaded(server, alice_key):
    client = redis_lib.Redis.from_url(settings.REDIS_URL)
    until = int(time.time() * 1000) + 60_000
    for slug in ("kimi-k2.5", "claude-haiku-4-5"):
        client.hset(f"kc:breaker:{slug}", mapping={"state": "open", "failures": 5, "open_until": until})
    _check(_both(server, alice_key), "overloaded", openai.InternalServerError, anthropic.ServiceUnavailableError)


def test_unknown_path_and_wrong_method_answer_in_protocol_format(server, alice_key):
    import httpx

    headers = {"authorization": f"Bearer {alice_key}"}
    assert httpx.get(f"{server.url}/v1/nope", headers=headers).json()["error"]["code"] == "not_found"
    response = httpx.get(f"{server.url}/v1/chat/completions", headers=headers)
    assert response.status_code == 405 and response.json()["error"]["type"] == "invalid_request_error"
