"""The one cost function, the one token estimator, and the reservation estimate.

Rule: cost = (input × input price + output × output price + cache write × cache-write price
+ cache read × cache-read price) / 1,000,000, in Decimal, quantized half-up to COST_PLACES (10 places of a
dollar, enough for one token of the cheapest model; exact for catalog prices with up to 4 decimal places).
Rounding to cents happens only on invoice lines (billing.money).
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal

import orjson
from django.conf import settings

from .types import ChatRequest, ImageBlock, Prices, ToolResultBlock, Usage

COST_PLACES = Decimal("0.0000000001")
MILLION = Decimal(1_000_000)
# What one image can cost in prompt tokens, at most about: Anthropic counts width × height / 750 and scales an
# image down to about 1.15 megapixels first (≈ 1,600 tokens); OpenAI's high detail stays below that too.
IMAGE_TOKENS_MAX = 1_600


def price_usage(*, prices: Prices, usage: Usage) -> Decimal:
    """Provider cost in USD of `usage` at `prices` (USD per million tokens)."""
    total = (
        usage.input_tokens * prices.input
        + usage.output_tokens * prices.output
        + usage.cache_write_tokens * prices.cache_write
        + usage.cache_read_tokens * prices.cache_read
    )
    return (Decimal(total) / MILLION).quantize(COST_PLACES, rounding=ROUND_HALF_UP)


def estimate_tokens(text: str) -> int:
    """The named estimator (chars/4, rounded up): used for output tokens a provider never reported (a stream
    cut short) and for prompt sizes before a call. About right for English; generous for code and CJK."""
    return math.ceil(len(text) / 4)


def estimate_prompt_tokens(request: ChatRequest) -> int:
    """The prompt's text tokens: system, messages (their text rendition includes tool calls and results), the
    tool definitions and a response schema, which the provider counts as prompt too. Images are not counted
    here (see `count_images`): this estimate also stands in for input a provider never reported, and a guess
    per image would bill more than a small image costs."""
    chars = len(request.system or "") + sum(len(m.content) for m in request.messages)
    for tool in request.tools or ():
        chars += len(tool.name) + len(tool.description or "") + len(orjson.dumps(tool.parameters))
    if request.response_format is not None and request.response_format.schema is not None:
        chars += len(orjson.dumps(request.response_format.schema))
    # A few tokens of framing per message (role markers), as providers count them.
    return math.ceil(chars / 4) + 4 * len(request.messages)


def count_images(request: ChatRequest) -> int:
    """How many images the prompt carries (in messages and in tool results)."""
    images = 0
    for message in request.messages:
        for block in message.blocks or ():
            if isinstance(block, ImageBlock):
                images += 1
            elif isinstance(block, ToolResultBlock) and not isinstance(block.content, str):
                images += sum(isinstance(part, ImageBlock) for part in block.content)
    return images


def request_max_tokens(request: ChatRequest) -> int:
    return request.max_tokens or settings.ROUTING_DEFAULT_MAX_TOKENS


def estimate_max_cost(*, tenant, tier: str, request: ChatRequest) -> Decimal:
    """An upper bound of the provider cost of `request` on `tier`, for a budget reservation: the most expensive
    endpoint of the tier's chain (and of the Auto chain, which a MAX request may be downgraded to, and of the
    MAX chain, which smart Auto may escalate an Auto request to), with the whole prompt priced as cache writes
    or input (whichever is dearer), each image as IMAGE_TOKENS_MAX, and max_tokens of output.

    Sync (may load the catalog from the database); call through sync_to_async from async code.
    """
    from .catalog import catalog_get

    catalog = catalog_get()
    slugs = set(catalog.chains.get(tier, ())) | set(catalog.chains.get("auto", ()))
    if tier == "auto" and tenant.escalation_level > 0:
        slugs |= set(catalog.chains.get("max", ()))
    prompt = estimate_prompt_tokens(request) + IMAGE_TOKENS_MAX * count_images(request)
    output = request_max_tokens(request)
    worst = Decimal(0)
    for slug in slugs:
        endpoint = catalog.endpoints.get(slug)
        if endpoint is None or not endpoint.enabled:
            continue
        p = endpoint.prices
        bound = price_usage(prices=Prices(input=max(p.input, p.cache_write), output=p.output,
                                          cache_write=p.cache_write, cache_read=p.cache_read),
                            usage=Usage(input_tokens=prompt, output_tokens=output))
        worst = max(worst, bound)
    return worst
