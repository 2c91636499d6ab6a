"""Images through both endpoints with the official SDKs: OpenAI image_url parts (data URLs, https URLs) and
Anthropic image blocks (base64, url), to each provider family in its own form; the proxy never fetches a URL.
https://platform.openai.com/docs/guides/images-vision, https://docs.anthropic.com/en/docs/build-with-claude/vision"""

import base64

import pytest

from .conftest import usage_rows

pytestmark = pytest.mark.django_db(transaction=True)

# A 1x1 transparent PNG.
PNG = base64.b64encode(bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082")).decode()


def test_an_openai_image_request_reaches_kimi_as_a_data_url(openai_client, fake_provider):
    raw = openai_client.chat.completions.with_raw_response.create(model="auto", messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is in this image?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "low"}}]}])
    assert raw.headers["x-kiwiclaw-model"] == "kimi-k2.5"
    assert raw.parse().choices[0].message.content.startswith("Echo from kimi-k2.5: What is in this image?")
    [sent] = fake_provider.requests()
    assert sent["images"] == 1
    assert sent["messages"][0]["content"][1] == {"type": "image_url", "image_url": {
        "url": f"data:image/png;base64,{PNG}", "detail": "low"}}
    assert len(usage_rows(1)) == 1


def test_an_openai_image_reaches_claude_as_a_base64_block(openai_client, fake_provider):
    openai_client.chat.completions.create(model="max", stream=True, messages=[{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        {"type": "text", "text": "Describe it."}]}]).close()
    [sent] = fake_provider.requests()
    assert sent["messages"][0]["content"][0] == {"type": "image", "source": {
        "type": "base64", "media_type": "image/png", "data": PNG}}


def test_an_anthropic_image_block_reaches_both_providers(anthropic_client, fake_provider):
    for model, expected in (("max", {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                                   "data": PNG}}),
                            ("auto", {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}})):
        fake_provider.reset()
        message = anthropic_client.messages.create(model=model, max_tokens=50, messages=[{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
            {"type": "text", "text": "What is this?"}]}])
        assert message.content[0].text.startswith("Echo from")
        [sent] = fake_provider.requests()
        assert sent["images"] == 1 and sent["messages"][0]["content"][0] == expected


def test_an_image_url_goes_only_to_a_provider_that_fetches_it(anthropic_client, fake_provider):
    """Kimi takes base64 only: an Auto request with a URL image is answered by Claude Haiku, which fetches it;
    nothing of the proxy fetched the URL (the fake received the URL itself)."""
    url = "https://upload.wikimedia.org/wikipedia/commons/a/a7/Kiwi.png"
    raw = anthropic_client.messages.with_raw_response.create(model="auto", max_tokens=50, messages=[
        {"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": url}},
                                     {"type": "text", "text": "What bird?"}]}])
    assert raw.headers["x-kiwiclaw-model"] == "claude-haiku-4-5"
    [sent] = fake_provider.requests()
    assert sent["messages"][0]["content"][0]["source"] == {"type": "url", "url": url}

