"""Limits per API key and per member through the live proxy and both SDKs: tiers (403), spend (429
insufficient_quota), expiry (401), each refusal naming the limit it hit; and 50 concurrent requests near a
key's limit."""

import asyncio
import time
from datetime import timedelta
from decimal import Decimal

import anthropic
import httpx
import openai
import pytest
from django.db.models import Sum
from django.utils import timezone

from billing.models import UsageRecord
from tenants.models import ApiKey, Membership
from tests.billing.conftest import record_usage
from tests.factories import make_api_key

from .conftest import set_key_limits, set_member_limits

pytestmark = pytest.mark.django_db(transaction=True)
HI = [{"role": "user", "content": "hello"}]


def _clients(server, secret):
    return (openai.OpenAI(api_key=secret, base_url=f"{server.url}/v1", max_retries=0, timeout=20),
            anthropic.Anthropic(api_key=secret, base_url=server.url, max_retries=0, timeout=20))


@pytest.fixture
def carol_key(server, carol, acme):
    return make_api_key(tenant=acme, user=carol, name="carol ci")


def test_a_key_limited_to_auto_gets_403_for_max_through_both_sdks(server, carol_key):
    key, secret = carol_key
    oa, an = _clients(server, secret)
    assert oa.chat.completions.create(model="max", messages=HI).model == "claude-opus-4-6"  # cached identity
    set_key_limits(key, tiers=["auto"])  # reaches the server's cached identity at once
    with pytest.raises(openai.PermissionDeniedError) as o_info:
        oa.chat.completions.create(model="max", messages=HI)
    with pytest.raises(anthropic.PermissionDeniedError) as a_info:
        an.messages.create(model="max", max_tokens=50, messages=HI)
    text = "The API key “carol ci” is limited to Auto: the MAX tier is not allowed for it."
    assert o_info.value.body["type"] == "permission_error" and o_info.value.body["message"] == text
    assert a_info.value.body["error"]["type"] == "permission_error" and a_info.value.body["error"]["message"] == text
    assert oa.chat.completions.create(model="auto", messages=HI).choices[0].message.content
    assert an.messages.create(model="auto", max_tokens=50, messages=HI).content[0].text
    assert UsageRecord.objects.filter(api_key_id=key.pk, tier="max").count() == 1  # the refused ones wrote nothing


def test_a_member_limited_to_auto_gets_403_for_max_naming_the_member(server, carol, acme, carol_key):
    set_member_limits(Membership.objects.get(user=carol, tenant=acme), tiers=["auto"])
    oa, _ = _clients(server, carol_key[1])
    with pytest.raises(openai.PermissionDeniedError) as info:
        oa.chat.completions.create(model="max", messages=HI)
    assert info.value.body["message"] == ("The member carol@acme.test is limited to Auto: the MAX tier is not "
                                          "allowed for them.")


def test_a_key_over_its_spend_limit_gets_429_insufficient_quota_naming_the_key(server, alice, carol, acme,
                                                                              carol_key):
    key, secret = carol_key
    set_key_limits(key, limit="1.00")
    record_usage(acme, source="api", api_key_id=key.pk, user_id=carol.pk, input_tokens=0, output_tokens=0,
                 cost=Decimal("1.00") / Decimal("1.3"))  # the key's $1.00 spent
    oa, an = _clients(server, secret)
    with pytest.raises(openai.RateLimitError) as o_info:
        oa.chat.completions.create(model="auto", messages=HI)
    with pytest.raises(anthropic.RateLimitError) as a_info:
        an.messages.create(model="auto", max_tokens=50, messages=HI)
    assert o_info.value.body["code"] == "insufficient_quota"
    assert o_info.value.body["message"].startswith("The API key “carol ci” has reached its $1.00 monthly spending "
                                                   "limit.")
    assert a_info.value.body["error"]["message"] == o_info.value.body["message"]
    # Alice's key in the same workspace is not limited by it.
    alice_secret = make_api_key(tenant=acme, user=alice, name="alice")[1]
    assert _clients(server, alice_secret)[0].chat.completions.create(model="auto", messages=HI).choices


def test_a_member_over_their_limit_is_refused_on_every_key_of_theirs(server, carol, acme, carol_key):
    set_member_limits(Membership.objects.get(user=carol, tenant=acme), limit="0.50")
    record_usage(acme, source="chat", user_id=carol.pk, input_tokens=0, output_tokens=0,
                 cost=Decimal("0.50") / Decimal("1.3"))  # her chat spent her $0.50
    with pytest.raises(openai.RateLimitError) as info:
        _clients(server, carol_key[1])[0].chat.completions.create(model="auto", messages=HI)
    assert info.value.body["message"].startswith("The member carol@acme.test has reached its $0.50 monthly")


def test_an_expired_key_is_refused_like_a_revoked_one_also_from_the_cache(server, carol_key):
    key, secret = carol_key
    set_key_limits(key, expires_at=timezone.now() + timedelta(seconds=3))
    oa, an = _clients(server, secret)
    assert oa.chat.completions.create(model="auto", messages=HI).choices  # now cached by the server
    expires = ApiKey.objects.get(pk=key.pk).expires_at
    while timezone.now() <= expires + timedelta(milliseconds=50):
        time.sleep(0.1)
    with pytest.raises(openai.AuthenticationError) as info:
        oa.chat.completions.create(model="auto", messages=HI)
    assert info.value.body["code"] == "invalid_api_key"
    with pytest.raises(anthropic.AuthenticationError):
        an.messages.create(model="auto", max_tokens=50, messages=HI)
    assert httpx.get(f"{server.url}/v1/models", headers={"authorization": f"Bearer {secret}"}).status_code == 401


def test_fifty_concurrent_requests_near_a_keys_limit_never_pass_it(server, carol, acme, carol_key):
    key, secret = carol_key
    set_key_limits(key, limit="1.00")
    record_usage(acme, source="api", api_key_id=key.pk, user_id=carol.pk, input_tokens=0, output_tokens=0,
                 cost=Decimal("0.85") / Decimal("1.3"))  # $0.15 of the key's $1.00 left
    # Each hold (at least ~$0.008 on Auto with 1,500 output tokens) is far above $0.15 / 50, so refusals do not depend on how
    # many answers settle (freeing their unused hold) before the rest arrive; the prompt stays under the TPM limit.
    body = {"model": "auto", "max_tokens": 1500, "messages": [{"role": "user", "content": "word " * 2000}]}

    async def fire():
        async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=50)) as client:
            async def one():
                response = await client.post(f"{server.url}/v1/chat/completions", json=body,
                                             headers={"authorization": f"Bearer {secret}"})
                return response.status_code, response.json()
            return await asyncio.gather(*(one() for _ in range(50)))

    answers = asyncio.run(fire())
    statuses = [status for status, _ in answers]
    assert set(statuses) <= {200, 429}, statuses
    refusals = [payload["error"] for status, payload in answers if status == 429]
    assert refusals and all(e["code"] == "insufficient_quota" and "API key “carol ci”" in e["message"]
                            for e in refusals)
    served = [payload for status, payload in answers if status == 200]
    assert served
    deadline = time.monotonic() + 10
    while UsageRecord.objects.filter(key__startswith="api:").count() < len(served) + 1 and \
            time.monotonic() < deadline:
        time.sleep(0.05)
    rows = UsageRecord.objects.filter(api_key_id=key.pk, source="api")
    assert rows.count() == len(served) + 1  # the prefilled row + one per answer
    spend = rows.aggregate(s=Sum("billed"))["s"]
    one_request = max(Decimal(str(p["usage"]["billed"])) for p in served)
    assert spend <= Decimal("1.00") + one_request
    assert spend <= Decimal("1.00")  # reservations hold the worst case: not even one request over


def test_a_key_limited_to_auto_is_never_escalated_to_max_by_smart_auto(server, acme, carol_key):
    from tests.smart_prompts import prompt_at_or_above

    hard, _ = prompt_at_or_above(10)
    acme.auto_escalation = 10  # the widest dial: this prompt escalates for an unlimited key
    acme.save(update_fields=["auto_escalation"])
    key, secret = carol_key
    oa, _ = _clients(server, secret)
    raw = oa.chat.completions.with_raw_response.create(model="auto", messages=[{"role": "user", "content": hard}])
    assert raw.headers["x-kiwiclaw-model"] == "claude-opus-4-6"
    set_key_limits(key, tiers=["auto"])
    raw = oa.chat.completions.with_raw_response.create(model="auto", messages=[{"role": "user", "content": hard}])
    assert raw.headers["x-kiwiclaw-model"] == "kimi-k2.5" and raw.headers["x-kiwiclaw-tier"] == "auto"


def test_models_lists_only_the_tiers_a_narrowed_key_or_member_may_use(server, carol, acme, carol_key):
    key, secret = carol_key
    oa, _ = _clients(server, secret)

    def listed():
        return sorted(m.id for m in oa.models.list().data)

    wide = listed()
    assert {"auto", "max"} <= set(wide)
    set_key_limits(key, tiers=["auto"])
    assert listed() == ["auto"]  # no MAX, and no catalog endpoint either: a narrowed key must name a tier
    set_key_limits(key, tiers=None)
    assert listed() == wide
    set_member_limits(Membership.objects.get(user=carol, tenant=acme), tiers=["max"])
    assert listed() == ["max"]
