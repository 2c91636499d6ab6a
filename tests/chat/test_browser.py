"""The chat in a real headless Chromium, against uvicorn (ASGI: the SSE view needs it), a real Celery worker
and the fake provider. A screenshot per test goes to artifacts/."""

import os
import re
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from conversations import services
from conversations.models import Conversation, Message
from tests.factories import DEMO_PASSWORD
from tests.harness import http_ready, listening_port, start_process

from .conftest import integration, wait_for, worker_subprocess_env

pytestmark = [integration, pytest.mark.browser, pytest.mark.slow]

ARTIFACTS = Path(django_settings.BASE_DIR) / "artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
KIMI, OPUS = "kimi-k2.5", "claude-opus-4-6"


@pytest.fixture
def asgi_server(chat_settings, fake_provider):
    """uvicorn on a loopback port (port 0, read back by tests/harness.py), serving the test database."""
    env = worker_subprocess_env(chat_settings)
    env.update({"DJANGO_ALLOWED_HOSTS": "localhost,127.0.0.1", "DJANGO_SECURE_SSL_REDIRECT": "0",
                "DJANGO_SECURE_HSTS_SECONDS": "0", "CHAT_SSE_BLOCK_MS": "200", "CHAT_SSE_HEARTBEAT": "2"})
    with start_process(
        [sys.executable, "-m", "uvicorn", "tests.chat.asgi_static:application", "--host", "127.0.0.1", "--port", "0",
         "--log-level", "info", "--no-access-log"],
        name="uvicorn (chat)", env=env, port_from=listening_port, ready=http_ready("/login/", 200),
    ) as server:
        yield f"http://localhost:{server.port}"
    # A failing test shows the server's log (tests/conftest.py); a passing one still shows a traceback in it.
    log = server.log_text()
    if "Traceback" in log or "ERROR" in log:
        sys.stderr.write(f"uvicorn log:\n{log}\n")


@pytest.fixture
def browser():
    # Playwright's sync API runs an event loop in this thread; the test's own ORM calls are still plain sync.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield browser
        browser.close()
    os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


@pytest.fixture
def open_page(request, browser, asgi_server, celery_worker):
    """A logged-in page factory; asserts no console error or page error at teardown and saves a screenshot."""
    pages, errors = [], []

    def open_as(user, viewport=None):
        context = browser.new_context(viewport=viewport or {"width": 1280, "height": 900})
        page = context.new_page()
        page.set_default_timeout(20_000)
        page.on("console", lambda msg: msg.type == "error" and not _is_favicon(msg) and errors.append(msg.text))
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{asgi_server}/login/?next=/chat/")
        page.fill("input[name=username]", user.email)
        page.fill("input[name=password]", DEMO_PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url("**/chat/")
        pages.append(page)
        return page

    yield open_as
    ARTIFACTS.mkdir(exist_ok=True)
    for i, page in enumerate(pages):
        page.screenshot(path=str(ARTIFACTS / f"chat-{request.node.name}-{i}.png"), full_page=True)
    assert errors == []


def _is_favicon(msg) -> bool:
    # The browser asks for /favicon.ico on its own; the site has none (not a chat page error).
    return (msg.location or {}).get("url", "").endswith("/favicon.ico")


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
    page.wait_for_url(re.compile(r".*/chat/\d+/$"))
    _send(page, "Tell me about kiwis")

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
