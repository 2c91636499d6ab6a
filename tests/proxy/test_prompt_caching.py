"""Anthropic cache_control through /v1/messages with the official anthropic SDK: the breakpoints reach Claude as
sent (system, message blocks, tools), the cache tokens Claude reports are the usage row's and are priced at the
endpoint's cache prices; an OpenAI-compatible provider gets no cache_control (it caches on its own).
https://docs.anthropic.com/en/docs/build-with-claude/prompt-caching"""

from decimal import Decimal

import pytest

from routing.cost import COST_PLACES

from .conftest import usage_rows

pytestmark = pytest.mark.django_db(transaction=True)

EPHEMERAL = {"type": "ephemeral"}
SYSTEM = [{"type": "text", "text": "You answer questions about New Zealand birds. " * 5,
           "cache_control": EPHEMERAL}]
TOOLS = [{"name": "lookup", "description": "Look up a bird.", "cache_control": EPHEMERAL,
          "input_schema": {"type": "object", "properties": {"bird": {"type": "string"}}}}]


def _ask(client, question: str):
    return client.messages.with_raw_response.create(
        model="max", max_tokens=40, system=SYSTEM, tools=TOOLS, tool_choice={"type": "none"},
        messages=[{"role": "user", "content": [{"type": "text", "text": question, "cache_control": EPHEMERAL}]}])


def test_cache_control_reaches_claude_and_the_cache_tokens_are_billed(anthropic_client, fake_provider):
    first = _ask(anthropic_client, "Is the kiwi nocturnal?")
    second = _ask(anthropic_client, "Is the kiwi nocturnal? And the kakapo?")
    sent = fake_provider.requests()
    assert sent[0]["system"] == SYSTEM
    assert sent[0]["params"]["tools"][0]["cache_control"] == EPHEMERAL
    assert sent[0]["messages"][0]["content"][0]["cache_control"] == EPHEMERAL
    one, two = first.parse().usage, second.parse().usage
    # The first request writes the whole prefix; the second reads tools and system and writes its new message.
    assert one.cache_read_input_tokens == 0 and one.cache_creation_input_tokens > 0
    assert 0 < two.cache_read_input_tokens < one.cache_creation_input_tokens
    assert two.cache_creation_input_tokens > 0
    rows = usage_rows(2)
    by_key = {r.key: r for r in rows}
    for raw, usage in ((first, one), (second, two)):
        row = by_key[f"api:{raw.headers['x-request-id']}"]
        assert (row.cache_write_tokens, row.cache_read_tokens, row.input_tokens, row.output_tokens) == (
            usage.cache_creation_input_tokens, usage.cache_read_input_tokens, usage.input_tokens,
            usage.output_tokens)
        # Opus: input 5, output 25, cache write 6.25, cache read 0.50 USD per million tokens.
        expected = (Decimal(usage.input_tokens) * 5 + Decimal(usage.output_tokens) * 25
                    + Decimal(usage.cache_creation_input_tokens) * Decimal("6.25")
                    + Decimal(usage.cache_read_input_tokens) * Decimal("0.5")) / 1_000_000
        assert row.cost == expected.quantize(COST_PLACES)
        assert Decimal(raw.headers["x-kiwiclaw-cost"]) == row.cost


def test_an_openai_compatible_provider_gets_no_cache_control(anthropic_client, fake_provider):
    message = anthropic_client.messages.create(
        model="auto", max_tokens=40, system=SYSTEM, cache_control=EPHEMERAL,
        messages=[{"role": "user", "content": "Is the kiwi nocturnal?"}])
    assert message.content[0].text.startswith("Echo from kimi-k2.5")
    [sent] = fake_provider.requests()
    assert "cache_control" not in str(sent["messages"]) and "cache_control" not in str(sent["params"])
    assert sent["messages"][0] == {"role": "system", "content": SYSTEM[0]["text"]}
