"""The SSE fast path (conversations/sse_asgi.py): streams carrying a token skip Django's middleware, and anything
the token does not prove falls through to the Django view, which answers 404 for someone else's message."""

import re

import httpx
import pytest
from asgiref.sync import async_to_sync
from django.test import Client
from django.urls import reverse

from conversations import sse
from conversations.models import Message
from conversations.streams import ENTRY_DELTA, ENTRY_END, stream_key
from kiwiclaw.asgi import application

from .conftest import integration, parse_sse

pytestmark = integration


def _login(user) -> Client:
    client = Client()
    client.force_login(user)
    client.get(reverse("conversations:home"))  # sets the CSRF cookie, as the page does in a browser
    return client


def _send(client, conversation) -> tuple[Message, str]:
    response = client.post(reverse("conversations:send", args=[conversation.pk]), {"text": "Hello?"},
                           HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    url = re.search(r'sse-connect="([^"]+)"', response.content.decode())[1].replace("&amp;", "&")
    answer = Message.objects.filter(conversation=conversation, role="assistant").latest("id")
    return answer, url


def _cookies(client) -> dict:
    return {name: morsel.value for name, morsel in client.cookies.items()}


def _get(url, cookies, headers=None) -> httpx.Response:
    async def run():
        # https: the ASGI application was built with the production settings, which redirect plain HTTP.
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver", cookies=cookies) as http:
            return await http.get(url, headers=headers or {})

    return async_to_sync(run)()


def _finish(answer: Message, chat_redis, parts: list[str]) -> None:
    """What the worker does: deltas into the stream, the final state into the database, then the end marker."""
    for part in parts:
        chat_redis.xadd(stream_key(answer.pk), {"t": ENTRY_DELTA, "v": part})
    Message.objects.filter(pk=answer.pk).update(status="done", content="".join(parts), upstream_model="kimi-k2.5",
                                               endpoint="kimi-k2.5", output_tokens=len(parts))
    chat_redis.xadd(stream_key(answer.pk), {"t": ENTRY_END, "s": "done"})


def test_a_token_url_streams_without_django_middleware(alice, alice_chat, chat_settings, chat_redis):
    client = _login(alice)
    answer, url = _send(client, alice_chat)
    assert "?t=" in url
    _finish(answer, chat_redis, ["Kiwis ", "are ", "<b>birds</b>."])

    response = _get(url, _cookies(client))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert "cross-origin-opener-policy" not in response.headers  # Django's security middleware never ran
    events = parse_sse(response.text)
    assert [e["event"] for e in events] == ["delta", "delta", "delta", "final"]
    assert events[2]["data"] == "<span>&lt;b&gt;birds&lt;/b&gt;.</span>"
    final = events[-1]["data"]
    assert f'id="msg-{answer.pk}"' in final and "kimi-k2.5" in final
    # The Retry form carries a CSRF token that goes with the browser's cookie, so it can be posted.
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', final)[1]
    retry = Client(enforce_csrf_checks=True)
    retry.force_login(alice)
    retry.cookies["csrftoken"] = client.cookies["csrftoken"].value
    posted = retry.post(reverse("conversations:retry", args=[alice_chat.pk, answer.pk]),
                        {"csrfmiddlewaretoken": token}, HTTP_HX_REQUEST="true")
    assert posted.status_code == 200


def test_last_event_id_resumes_on_the_fast_path(alice, alice_chat, chat_settings, chat_redis):
    client = _login(alice)
    answer, url = _send(client, alice_chat)
    _finish(answer, chat_redis, ["one ", "two ", "three"])
    first = parse_sse(_get(url, _cookies(client)).text)
    rest = parse_sse(_get(url, _cookies(client), headers={"Last-Event-ID": first[0]["id"]}).text)
    assert [e["data"] for e in rest if e["event"] == "delta"] == ["<span>two </span>", "<span>three</span>"]


def test_an_expired_stream_ends_with_the_final_state_from_the_database(alice, alice_chat, chat_settings,
                                                                       chat_redis):
    client = _login(alice)
    answer, url = _send(client, alice_chat)
    _finish(answer, chat_redis, ["all done"])
    chat_redis.delete(stream_key(answer.pk))  # as after the stream expired
    events = parse_sse(_get(url, _cookies(client)).text)
    assert [e["event"] for e in events] == ["final"]
    assert "all done" in events[0]["data"]


@pytest.mark.parametrize("intruder", ["carol", "bob"])
def test_someone_elses_session_with_the_token_url_gets_404(request, alice, alice_chat, chat_settings, chat_redis,
                                                           intruder):
    answer, url = _send(_login(alice), alice_chat)
    _finish(answer, chat_redis, ["private"])
    other = _login(request.getfixturevalue(intruder))
    response = _get(url, _cookies(other))
    assert response.status_code == 404
    missing = _get(reverse("conversations:stream", args=[alice_chat.pk, answer.pk + 10_000]), _cookies(other))
    assert response.content == missing.content
    assert _get(url, {}).status_code in (302, 404)  # no session at all: the login page or 404, never the stream


def test_a_token_does_not_open_another_message(alice, alice_chat, carol, chat_settings, chat_redis):
    client = _login(alice)
    first, url = _send(client, alice_chat)
    _finish(first, chat_redis, ["first"])
    second, _ = _send(client, alice_chat)
    moved = url.replace(f"/messages/{first.pk}/", f"/messages/{second.pk}/")
    # The token names the first message: for the second URL it proves nothing, and Django's view decides.
    response = _get(moved, _cookies(_login(carol)))
    assert response.status_code == 404


def test_stream_tokens_check_session_message_and_age(settings):
    token = sse.stream_token(session_key="s1", tenant_id=1, user_id=2, conversation_id=3, message_id=4)
    assert sse.stream_token_check(token, session_key="s1") == (1, 2, 3, 4)
    assert sse.stream_token_check(token, session_key="s2") is None
    assert sse.stream_token_check(token.replace(".4:", ".5:"), session_key="s1") is None
    assert sse.stream_token_check(token + "x", session_key="s1") is None
    assert sse.stream_token_check("", session_key="s1") is None
    assert sse.stream_token_check(token, session_key="s1", max_age=-1) is None  # expired
