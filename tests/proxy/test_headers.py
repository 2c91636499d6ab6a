"""Every /v1 answer carries the security headers Django's middleware gives its pages (the raw ASGI entry runs
ahead of that middleware): errors, lists, answers and streams alike."""

import httpx
import pytest

EXPECTED = {"x-content-type-options": "nosniff", "referrer-policy": "same-origin", "x-frame-options": "DENY"}


def _security(response: httpx.Response) -> dict:
    return {name: response.headers.get(name) for name in EXPECTED}


@pytest.mark.django_db(transaction=True)
def test_every_v1_answer_carries_the_security_headers(server, alice_key):
    auth = {"Authorization": f"Bearer {alice_key}"}
    body = {"model": "auto", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5}
    with httpx.Client(base_url=server.url, timeout=20) as http:
        answers = {
            "models": http.get("/v1/models", headers=auth),
            "no key": http.get("/v1/models"),
            "unknown path": http.get("/v1/nothing-here", headers=auth),
            "wrong method": http.get("/v1/chat/completions", headers=auth),
            "bad body": http.post("/v1/chat/completions", headers=auth, content=b"{"),
            "completion": http.post("/v1/chat/completions", headers=auth, json=body),
            "anthropic": http.post("/v1/messages", headers={"x-api-key": alice_key},
                                   json={**body, "max_tokens": 5}),
        }
        with http.stream("POST", "/v1/chat/completions", headers=auth, json={**body, "stream": True}) as stream:
            stream.read()
            answers["stream"] = stream
    assert {name: r.status_code for name, r in answers.items()} == {
        "models": 200, "no key": 401, "unknown path": 404, "wrong method": 405, "bad body": 400,
        "completion": 200, "anthropic": 200, "stream": 200}
    for name, response in answers.items():
        assert _security(response) == EXPECTED, name
