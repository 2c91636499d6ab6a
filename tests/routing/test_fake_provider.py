"""The fake provider itself: a real server on loopback, controlled while it runs."""

import httpx


def test_fake_provider_answers_deterministically_and_logs_requests(fake_provider):
    body = {"model": "kimi-k2.5", "messages": [{"role": "user", "content": "hello world"}]}
    headers = {"Authorization": "Bearer x"}
    first = httpx.post(f"{fake_provider.url}/v1/chat/completions", json=body, headers=headers).json()
    second = httpx.post(f"{fake_provider.url}/v1/chat/completions", json=body, headers=headers).json()
    assert first["choices"][0]["message"]["content"] == second["choices"][0]["message"]["content"]
    assert first["choices"][0]["message"]["content"].startswith("Echo from kimi-k2.5: hello world")
    assert first["usage"]["completion_tokens"] == 12
    assert fake_provider.models_called() == ["kimi-k2.5", "kimi-k2.5"]


def test_fake_provider_scenario_injects_errors_and_reset_clears_them(fake_provider):
    fake_provider.scenario("claude-opus-4-6", status=529)
    body = {"model": "claude-opus-4-6", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    headers = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
    response = httpx.post(f"{fake_provider.url}/v1/messages", json=body, headers=headers)
    assert response.status_code == 529
    assert response.json()["error"]["type"] == "overloaded_error"
    fake_provider.reset()
    assert httpx.post(f"{fake_provider.url}/v1/messages", json=body, headers=headers).status_code == 200


def test_fake_provider_forced_text_is_returned_verbatim(fake_provider):
    fake_provider.scenario("kimi-k2.5", {"text": "<script>alert(1)</script> <img src=x onerror=alert(2)>"})
    body = {"model": "kimi-k2.5", "messages": [{"role": "user", "content": "hi"}]}
    answer = httpx.post(f"{fake_provider.url}/v1/chat/completions", json=body,
                        headers={"Authorization": "Bearer x"}).json()
    assert answer["choices"][0]["message"]["content"] == "<script>alert(1)</script> <img src=x onerror=alert(2)>"
