"""The chat in a real headless Chromium, against uvicorn (ASGI: the SSE view needs it), a real Celery worker
and the fake provider (fixtures in conftest.py). A screenshot per test goes to artifacts/."""

import re
import time

import pytest

from conversations import services
from conversations.models import Conversation, Message

from .conftest import integration, wait_for

pytestmark = [integration, pytest.mark.browser, pytest.mark.slow]

KIMI, OPUS = "kimi-k2.5", "claude-opus-4-6"


def _send(page, text):
    box = page.locator("#composer textarea")
    box.fill(text)
    box.press("Enter")


def _last_answer(page):
    return page.locator("article.msg-assistant").last


def _wait_done(page, count):
    # A function, not an expression: Playwright evaluates a bare expression with eval(), which the pages' CSP
    # refuses.
    page.wait_for_function(
        f"() => document.querySelectorAll('article.msg-assistant[data-status=done]').length >= {count}")


def test_alice_sees_the_answer_grow_then_switches_to_max(open_page, fake_provider, alice):
    fake_provider.scenario(KIMI, {"tokens": 40, "delay_ms": 60})
    fake_provider.scenario(OPUS, {"text": "Deep thoughts from MAX.", "delay_ms": 10})
    page = open_page(alice)
    page.click("[data-testid=new-chat]")
    _send(page, "Tell me about kiwis")  # the new chat is created with its first message, then opened
    page.wait_for_url(re.compile(r".*/chat/\d+/$"))

    lengths = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        state = page.evaluate("""() => {
            const a = [...document.querySelectorAll('article.msg-assistant')].pop();
            if (!a) return null;
            return {status: a.dataset.status, len: a.querySelector('.msg-body').textContent.length};
        }""")
        if state and state["status"] == "done":
            break
        if state and state["len"] and (not lengths or state["len"] > lengths[-1]):
            lengths.append(state["len"])
        time.sleep(0.05)
    assert len(lengths) >= 3, lengths  # seen growing before it was done
    _wait_done(page, 1)
    assert "kimi-k2.5" in _last_answer(page).inner_text()
    # The first message named the conversation, in the header and in the sidebar alike.
    assert page.locator(".chat-list [aria-current=page]").inner_text().startswith("Tell me about kiwis")

    page.locator("label.tier-option", has_text="MAX").click()
    conversation = Conversation.objects.get(owner=alice)
    wait_for(lambda: Conversation.objects.get(pk=conversation.pk).tier == "max", what="tier persisted")
    _send(page, "Think harder")
    _wait_done(page, 2)
    answer = _last_answer(page)
    assert answer.locator("[data-testid=tier-badge]").inner_text() == "MAX"
    assert "Deep thoughts from MAX." in answer.inner_text()
    assert "claude-opus-4-6" in answer.inner_text()
    assert page.locator("#conv-cost").inner_text() != "$0.00"


def test_bob_on_free_sees_max_disabled_with_the_reason(open_page, bob, globex):
    conversation = services.conversation_create(tenant=globex, owner=bob)
    page = open_page(bob)
    page.goto(page.url.replace("/chat/", conversation.get_absolute_url()))
    assert page.locator("input[name=tier][value=max]").is_disabled()
    assert page.locator("#max-why").inner_text() == "MAX is not part of the Free plan — ask your admin to upgrade."


def test_model_html_renders_as_text(open_page, fake_provider, alice, acme):
    evil = 'Look: <script>window.__pwned = 1</script> and <img src=x onerror="window.__pwned = 2"> done'
    fake_provider.scenario(KIMI, {"text": evil, "delay_ms": 20})
    conversation = services.conversation_create(tenant=acme, owner=alice)
    page = open_page(alice)
    page.goto(page.url.replace("/chat/", conversation.get_absolute_url()))
    _send(page, "Say something nasty")
    _wait_done(page, 1)
    body = _last_answer(page).locator(".msg-body")
    assert "<script>window.__pwned = 1</script>" in body.inner_text()
    assert body.locator("script, img").count() == 0
    assert page.evaluate("window.__pwned") is None
    page.reload()  # rendered from the database this time
    assert page.locator("article.msg-assistant .msg-body script, article.msg-assistant .msg-body img").count() == 0
    assert page.evaluate("window.__pwned") is None


def test_no_horizontal_overflow_at_375px(open_page, fake_provider, alice, acme):
    conversation = services.conversation_create(tenant=acme, owner=alice, title="A rather long title " * 5)
    question = Message.objects.create(tenant=acme, conversation=conversation, role="user", content="x" * 300)
    Message.objects.create(
        tenant=acme, conversation=conversation, role="assistant", status="done", parent=question, tier="auto",
        upstream_model="kimi-k2.5", input_tokens=12, output_tokens=345, fallback_count=1,
        attempts=[{"endpoint": "kimi-k2.5", "outcome": "error", "error_kind": "server", "detail": "500"}],
        content="A long word: " + "y" * 200 + "\n\n```python\nprint('" + "z" * 300 + "')\n```\n\n| a | b |\n|---|---|\n| "
        + "w" * 150 + " | v |",
    )
    page = open_page(alice, viewport={"width": 375, "height": 800})
    page.goto(page.url.replace("/chat/", conversation.get_absolute_url()))
    page.wait_for_selector("article.msg-assistant")
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    _send(page, "and one more")  # the composer works at this width
    page.wait_for_function("() => document.querySelectorAll('article.msg-assistant').length == 2")
    _wait_done(page, 2)
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
