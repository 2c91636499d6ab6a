"""The prompt estimate counts what a provider counts as prompt beyond the messages' text (tool definitions, a
response schema), and a budget hold leaves room for the images a request carries. Figures by hand."""

from decimal import Decimal

import pytest

from routing.cost import IMAGE_TOKENS_MAX, count_images, estimate_max_cost, estimate_prompt_tokens
from routing.types import (
    ChatMessage,
    ChatRequest,
    ImageBlock,
    ResponseFormat,
    TextBlock,
    ToolResultBlock,
    ToolSpec,
    ToolUseBlock,
)

from .conftest import ask

PNG = ImageBlock(media_type="image/png", data="iVBORw0KGgo=", size=8)


def test_a_plain_prompt_is_its_characters_over_four_plus_framing():
    assert estimate_prompt_tokens(ask("hello")) == 2 + 4  # ceil(5 / 4) + 4 for the one message


def test_tool_definitions_and_a_response_schema_count_as_prompt():
    tool = ToolSpec(name="lookup", description="x" * 400, parameters={"type": "object"})
    # 5 + 6 (name) + 400 (description) + 17 (`{"type":"object"}`) = 428 characters -> 107 tokens, + 4
    assert estimate_prompt_tokens(ask("hello", tools=(tool,))) == 107 + 4
    schema = ResponseFormat(kind="json_schema", name="answer", schema={"type": "object"})
    assert estimate_prompt_tokens(ask("hello", response_format=schema)) == 6 + 4  # 22 characters -> 6


def test_images_are_counted_in_messages_and_in_tool_results():
    call = ToolUseBlock(id="call_1", name="shot", arguments="{}")
    result = ToolResultBlock(tool_use_id="call_1", content=(TextBlock("here"), PNG))
    request = ChatRequest(messages=[
        ChatMessage(role="user", content="look", blocks=(TextBlock("look"), PNG, PNG)),
        ChatMessage(role="assistant", content="shot({})", blocks=(call,)),
        ChatMessage(role="user", content="here", blocks=(result,)),
    ])
    assert count_images(request) == 3
    assert count_images(ask("no pictures")) == 0


@pytest.mark.django_db
def test_a_hold_leaves_room_for_each_image_at_the_dearest_prompt_price(pro_tenant):
    text_only = ChatRequest(messages=[ChatMessage(role="user", content="look")], max_tokens=100)
    with_image = ChatRequest(messages=[ChatMessage(role="user", content="look", blocks=(TextBlock("look"), PNG))],
                             max_tokens=100)
    # The MAX chain's dearest endpoint is Opus 4.6 either way; its dearer prompt price is the cache write,
    # $6.25 per million: 1,600 tokens more cost $0.01 more.
    assert IMAGE_TOKENS_MAX == 1_600
    difference = (estimate_max_cost(tenant=pro_tenant, tier="max", request=with_image)
                  - estimate_max_cost(tenant=pro_tenant, tier="max", request=text_only))
    assert difference == Decimal("0.01")
