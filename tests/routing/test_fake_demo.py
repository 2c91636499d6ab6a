"""The fake provider's markdown demo answers: what `make dev` shows without calling the control API."""

import json

import httpx

from conversations.templatetags.chat import chat_markdown

HEADERS = {"x-api-key": "k", "anthropic-version": "2023-06-01"}


def _answer(fake_provider, prompt: str, stream: bool = False) -> dict | str:
    body = {"model": "claude-opus-4-6", "max_tokens": 500, "messages": [{"role": "user", "content": prompt}]}
    if not stream:
        return httpx.post(f"{fake_provider.url}/v1/messages", json=body, headers=HEADERS).json()
    body["stream"] = True
    return httpx.post(f"{fake_provider.url}/v1/messages", json=body, headers=HEADERS).text


def test_code_table_and_list_prompts_get_markdown_that_renders(fake_provider):
    answer = _answer(fake_provider, "Show me some code, a comparison table and a list of steps")
    text = answer["content"][0]["text"]
    assert text.startswith("Echo from claude-opus-4-6:")
    assert text.index("```python") < text.index("| Model |") < text.index("1. **Auto**")
    html = chat_markdown(text)
    assert '<code class="language-python">' in html and "<table>" in html and "<ol>" in html
    assert answer["usage"]["output_tokens"] == len(text.split())  # one token per word, as the echo answer


def test_demo_answers_are_deterministic_and_stream_the_same_text(fake_provider):
    first = _answer(fake_provider, "write a python function")["content"][0]["text"]
    assert first == _answer(fake_provider, "write a python function")["content"][0]["text"]
    stream = _answer(fake_provider, "write a python function", stream=True)
    deltas = [json.loads(line[6:])["delta"] for line in stream.splitlines()
              if line.startswith("data: ") and '"content_block_delta"' in line]
    assert len(deltas) > 10 and "".join(d["text"] for d in deltas) == first
    assert "```python" in first and "| Model |" not in first


def test_other_prompts_and_token_scenarios_keep_the_plain_echo(fake_provider):
    assert _answer(fake_provider, "hello there")["content"][0]["text"].startswith("Echo from claude-opus-4-6: hello")
    fake_provider.scenario("claude-opus-4-6", tokens=5)
    text = _answer(fake_provider, "a table please")["content"][0]["text"]
    assert text == "Echo from claude-opus-4-6: a table"
