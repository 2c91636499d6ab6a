"""The chat's everyday behaviour in a real headless Chromium (issue #15, items 1-9): one answer at a time, no
empty chats, versions, code and copy, the phone layout, the conversation list, search, instructions and
export. Fixtures (uvicorn, Celery worker, fake provider, a logged-in page that fails on console errors and
saves a screenshot under artifacts/) are in conftest.py."""

import re

import pytest

from conversations import services
from conversations.models import Conversation, Message

from .conftest import ARTIFACTS, integration, wait_for
from .test_browser import KIMI

pytestmark = [integration, pytest.mark.browser, pytest.mark.slow]

PHONE = {"width": 375, "height": 740}
DESKTOP = {"width": 1280, "height": 900}


def _send(page, text):
    box = page.locator("#composer textarea")
    box.fill(text)
    box.press("Enter")


def _wait_done(page, count):
    page.wait_for_function(
        f"() => document.querySelectorAll('article.msg-assistant[data-status=done]').length >= {count}")


def _open(page, conversation):
    page.goto(page.url.split("/chat/")[0] + conversation.get_absolute_url())


# --- 1. one answer at a time ---


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1280", "375"])
def test_send_becomes_stop_while_the_answer_streams(open_page, fake_provider, alice, acme, viewport):
    fake_provider.scenario(KIMI, {"tokens": 80, "delay_ms": 60})
    conversation = services.conversation_create(tenant=acme, owner=alice)
    page = open_page(alice, viewport=viewport)
    _open(page, conversation)
    _send(page, "Tell me a long story")
    page.wait_for_selector("[data-testid=composer-stop]:visible")
    assert page.locator("[data-testid=send]").is_hidden()
    # Enter does not send while the answer streams: htmx would start the POST inside the key's handler, so none
    # has started once the key press returns; the text stays in the box.
    posts = []
    page.on("request", lambda r: r.method == "POST" and "/messages/" in r.url and posts.append(r.url))
    _send(page, "and another one")
    assert posts == [] and page.input_value("#composer textarea") == "and another one"
    assert page.locator("article.msg-user").count() == 1
    page.click("[data-testid=composer-stop]")
    page.wait_for_selector("article.msg-assistant[data-status=cancelled]")
    page.wait_for_selector("[data-testid=send]:visible")
    assert page.locator("[data-testid=composer-stop]").is_hidden()
    assert Message.objects.filter(role="user").count() == 1
    assert Message.objects.get(role="assistant").status == "cancelled"


def test_a_second_tab_sending_mid_answer_is_told_why(open_page, fake_provider, alice, acme):
    fake_provider.scenario(KIMI, {"tokens": 80, "delay_ms": 60})
    open_page.expected_errors.append("status of 409 (Conflict)")  # the refusal this test provokes
    conversation = services.conversation_create(tenant=acme, owner=alice)
    first = open_page(alice)
    _open(first, conversation)
    second = open_page(alice)
    _open(second, conversation)  # opened before the first tab sends: its composer is idle
    _send(first, "Tell me a long story")
    first.wait_for_selector("[data-testid=composer-stop]:visible")
    _send(second, "Me too")
    error = second.locator("#composer-error")
    error.wait_for(state="visible")
    wait_for(lambda: "Wait for the answer to finish" in error.inner_text(), what="the 409's message")
    assert Message.objects.filter(role="assistant").count() == 1
    first.click("[data-testid=composer-stop]")
    first.wait_for_selector("article.msg-assistant[data-status=cancelled]")


# --- 5. no empty chats ---


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1280", "375"])
def test_new_chat_is_an_empty_composer_until_the_first_message(open_page, fake_provider, alice, viewport):
    fake_provider.scenario(KIMI, {"text": "Kiwis are birds.", "delay_ms": 10})
    page = open_page(alice, viewport=viewport)
    for _ in range(6):
        if viewport is PHONE:  # "+ New chat" is in the drawer
            page.click("[data-testid=drawer-toggle]")
            page.wait_for_selector("[data-testid=new-chat]", state="visible")
        page.click("[data-testid=new-chat]")
        page.wait_for_load_state()
    assert Conversation.objects.count() == 0
    assert page.evaluate("() => document.activeElement === document.querySelector('#composer textarea')")
    _send(page, "What is a kiwi?")
    page.wait_for_url(re.compile(r".*/chat/\d+/$"))
    _wait_done(page, 1)
    assert "Kiwis are birds." in page.locator("article.msg-assistant").inner_text()
    assert list(Conversation.objects.values_list("title", flat=True)) == ["What is a kiwi?"]
    assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]


# --- 4. edit and versions ---


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1280", "375"])
def test_retry_and_edit_make_versions_in_place(open_page, fake_provider, alice, acme, viewport):
    conversation = services.conversation_create(tenant=acme, owner=alice)
    page = open_page(alice, viewport=viewport)
    _open(page, conversation)
    fake_provider.scenario(KIMI, {"text": "First version.", "delay_ms": 5})
    _send(page, "What is a kiwi?")
    _wait_done(page, 1)
    fake_provider.scenario(KIMI, {"text": "Second version.", "delay_ms": 5})
    page.click("article.msg-assistant button:has-text('Retry')")
    page.wait_for_function("() => document.querySelector('[data-testid=version-count]')?.textContent === '2/2'")
    _wait_done(page, 1)
    answer = page.locator("article.msg-assistant")
    assert answer.count() == 1  # in place, not below
    assert "Second version." in answer.inner_text()
    page.click("[data-testid=version-prev]")
    page.wait_for_function("() => document.querySelector('[data-testid=version-count]')?.textContent === '1/2'")
    assert "First version." in page.locator("article.msg-assistant").inner_text()

    fake_provider.scenario(KIMI, {"text": "Third version.", "delay_ms": 5})
    page.click("[data-testid=edit]")
    page.fill(".msg-edit textarea", "What is a kiwi, really?")
    page.click("[data-testid=edit-send]")
    page.wait_for_function("() => document.querySelector('[data-testid=version-count]')?.textContent === '3/3'")
    _wait_done(page, 1)
    assert page.locator("article.msg-user .msg-body").inner_text() == "What is a kiwi, really?"
    assert "Third version." in page.locator("article.msg-assistant").inner_text()
    assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
    assert Message.objects.filter(role="assistant").count() == 3


# --- 3. code and copy (and 16: the fake provider's markdown answers render) ---


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1280", "375"])
def test_code_is_highlighted_with_a_label_and_copy_buttons(open_page, fake_provider, alice, acme, browser, viewport):
    fake_provider.scenario(KIMI, {"delay_ms": 5})  # the markdown demo answers (devtools/fake_provider/demo.py)
    conversation = services.conversation_create(tenant=acme, owner=alice)
    page = open_page(alice, viewport=viewport)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    _open(page, conversation)
    _send(page, "Show me some code, a table and a list")
    _wait_done(page, 1)
    answer = page.locator("article.msg-assistant")
    block = answer.locator(".code-block")
    assert block.locator(".code-lang").inner_text() == "python"
    assert block.locator("pre code span.k").count() > 0  # highlighted once the turn ended (the final render)
    color = block.locator("pre code span.k").first.evaluate("e => getComputedStyle(e).color")
    assert color not in ("rgb(230, 237, 243)", "")  # the keyword has the theme's colour, not the plain text's
    assert answer.locator(".markdown table th").count() == 3 and answer.locator(".markdown ol li").count() >= 3
    assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]

    block.locator(".code-copy").click()
    wait_for(lambda: block.locator(".code-copy").inner_text() == "Copied", what="the code copied")
    code = page.evaluate("() => navigator.clipboard.readText()")
    assert code.startswith("def greet(name: str) -> str:") and "```" not in code

    answer.locator("[data-testid=copy-message]").click()
    source = Message.objects.get(role="assistant").content
    wait_for(lambda: page.evaluate("() => navigator.clipboard.readText()") == source, what="the markdown copied")
    assert "```python" in source
    page.locator("article.msg-user [data-testid=copy-message]").click()
    wait_for(lambda: page.evaluate("() => navigator.clipboard.readText()") == "Show me some code, a table and a list",
             what="the question copied")


# --- 2. mobile first ---


def _box(page, selector):
    return page.locator(selector).first.bounding_box()


def test_at_375px_the_list_is_a_drawer_and_the_chat_comes_first(open_page, fake_provider, alice, acme):
    fake_provider.scenario(KIMI, {"text": "Short answer.", "delay_ms": 5})
    other = services.conversation_create(tenant=acme, owner=alice, title="An older chat")
    conversation = services.conversation_create(tenant=acme, owner=alice, title="Kiwi facts " * 8)
    page = open_page(alice, viewport=PHONE)
    _open(page, conversation)
    _send(page, "What is a kiwi?")
    _wait_done(page, 1)
    page.evaluate("() => window.scrollTo(0, 0)")
    # The drawer is closed: the list is off screen, the messages come first, right under one header row.
    assert not page.locator("#chat-sidebar").is_visible()
    header = _box(page, ".chat-header-row")
    assert header["height"] <= 48, header
    assert _box(page, "article.msg-user")["y"] < 260
    # The message box is a line or two, not a third of the screen; it grows with its text, within bounds.
    assert _box(page, "#composer")["height"] < PHONE["height"] / 5
    page.fill("#composer textarea", "line\n" * 30)
    page.dispatch_event("#composer textarea", "input")
    assert _box(page, "#composer textarea")["height"] <= PHONE["height"] * 0.2 + 2
    page.fill("#composer textarea", "")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]

    page.click("[data-testid=drawer-toggle]")
    page.wait_for_selector("#chat-sidebar a:has-text('An older chat')", state="visible")
    assert page.get_attribute("[data-testid=drawer-toggle]", "aria-expanded") == "true"
    box = wait_for(lambda: (b := _box(page, "#chat-sidebar")) and b["x"] >= 0 and b, what="the drawer slid in")
    assert box["width"] <= PHONE["width"]
    page.screenshot(path=str(ARTIFACTS / "chat-drawer-open-375.png"))
    page.keyboard.press("Escape")
    page.wait_for_selector("#chat-sidebar", state="hidden")
    page.click("[data-testid=drawer-toggle]")
    page.click(f"#chat-sidebar a[href='{other.get_absolute_url()}']")
    page.wait_for_url(f"**{other.get_absolute_url()}")
    assert not page.locator("#chat-sidebar").is_visible()


def test_at_1280px_the_list_stays_beside_the_chat(open_page, alice, acme):
    conversation = services.conversation_create(tenant=acme, owner=alice, title="Desktop")
    page = open_page(alice, viewport=DESKTOP)
    _open(page, conversation)
    assert page.locator("#chat-sidebar").is_visible()
    assert page.locator("[data-testid=drawer-toggle]").is_hidden()
    assert _box(page, ".chat-header-row")["height"] <= 48
    page.click("[data-testid=conv-menu]")
    page.fill("#conv-rename-title", "Renamed from the menu")
    page.click(".conv-rename button")
    page.wait_for_selector("#conv-title h1:has-text('Renamed from the menu')")
    assert page.locator(f"#chat-list-title-{conversation.pk}").inner_text() == "Renamed from the menu"


# --- 6. the conversation list ---


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1280", "375"])
def test_the_list_is_grouped_pages_and_renames_and_deletes(open_page, alice, acme, viewport):
    import datetime

    from django.utils import timezone

    old = [Conversation(tenant=acme, owner=alice, title=f"old chat {i:03}") for i in range(103)]
    Conversation.objects.bulk_create(old)
    Conversation.objects.update(updated_at=timezone.now() - datetime.timedelta(days=30))
    keep = services.conversation_create(tenant=acme, owner=alice, title="Today's chat")
    doomed = services.conversation_create(tenant=acme, owner=alice, title="Delete me")
    page = open_page(alice, viewport=viewport)
    page.on("dialog", lambda dialog: dialog.accept())
    _open(page, keep)
    if viewport is PHONE:
        page.click("[data-testid=drawer-toggle]")
    headings = page.locator(".chat-list-group h2").all_inner_texts()
    assert [h.lower() for h in headings] == ["today", "older"]
    assert page.locator(".chat-list-item").count() == 100
    page.locator("[data-testid=list-more]").scroll_into_view_if_needed()
    page.click("[data-testid=list-more]")
    page.wait_for_function("() => document.querySelectorAll('.chat-list-item').length === 105")
    assert page.locator(".chat-list-group h2").count() == 2  # the next page continues "Older"

    item = page.locator(f"#chat-list-item-{keep.pk}")
    item.locator("[data-testid=list-menu]").click()
    item.locator("input[name=title]").fill("Renamed in the list")
    item.locator("[data-testid=list-rename]").click()
    page.wait_for_selector(f"#chat-list-title-{keep.pk}:has-text('Renamed in the list')")
    page.wait_for_selector("#conv-title h1:has-text('Renamed in the list')")  # the open conversation's header too
    item.locator("[data-testid=list-menu]").click()  # close its menu

    doomed_item = page.locator(f"#chat-list-item-{doomed.pk}")
    doomed_item.locator("[data-testid=list-menu]").click()
    doomed_item.locator("[data-testid=list-delete]").click()
    doomed_item.wait_for(state="detached")
    assert not Conversation.objects.filter(pk=doomed.pk).exists()
    assert Conversation.objects.get(pk=keep.pk).title == "Renamed in the list"
    assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]


# --- 8. instructions ---


def test_workspace_and_conversation_instructions_reach_the_model_escaped(open_page, fake_provider, alice, acme,
                                                                          settings):
    fake_provider.scenario(KIMI, {"text": "Bonjour.", "delay_ms": 5})
    evil = "Answer in French. </textarea><script>window.__pwned = 1</script>"
    page = open_page(alice)
    base = page.url.split("/chat/")[0]
    page.goto(f"{base}/settings/")
    page.click("[data-testid=chat-settings-link]")
    page.fill("#default-instructions", "Always be polite.")
    page.click("[data-testid=save-default-instructions]")
    page.wait_for_selector("[data-testid=saved]")

    conversation = services.conversation_create(tenant=acme, owner=alice)
    _open(page, conversation)
    page.click("[data-testid=conv-menu]")
    page.fill("[data-testid=instructions]", evil)
    page.click("[data-testid=save-instructions]")
    page.wait_for_selector("[data-testid=instructions-saved]")
    page.reload()
    page.click("[data-testid=conv-menu]")
    assert page.input_value("[data-testid=instructions]") == evil  # shown as text, never run
    assert page.evaluate("window.__pwned") is None
    page.click("[data-testid=conv-menu]")
    _send(page, "Hello there")
    _wait_done(page, 1)
    [request] = [r for r in fake_provider.requests() if r["model"] == KIMI]
    system = request.get("system") or request["messages"][0]["content"]
    assert "Always be polite.\n\nAnswer in French." in system


# --- 7. search ---


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1280", "375"])
def test_search_finds_message_text_and_opens_the_message(open_page, alice, carol, acme, viewport):
    mine = services.conversation_create(tenant=acme, owner=alice, title="Birds")
    question = Message.objects.create(tenant=acme, conversation=mine, role="user", content="Where do kiwis sleep?")
    hit = Message.objects.create(tenant=acme, conversation=mine, role="assistant", status="done", parent=question,
                                 content="Kiwis sleep in <b>burrows</b> during the day.")
    theirs = services.conversation_create(tenant=acme, owner=carol, title="Carol's birds")
    Message.objects.create(tenant=acme, conversation=theirs, role="user", content="carol burrows secret")
    other = services.conversation_create(tenant=acme, owner=alice, title="Elsewhere")
    page = open_page(alice, viewport=viewport)
    _open(page, other)
    if viewport is PHONE:
        page.click("[data-testid=drawer-toggle]")
    page.fill(".chat-search input", "burrow")
    results = page.locator("[data-testid=search-hits] a")
    results.first.wait_for()
    assert results.count() == 1  # carol's message never appears
    assert results.first.locator("mark").inner_text() == "burrows"
    assert results.first.locator("b").count() == 0  # the message's own markup never becomes markup
    results.first.click()
    page.wait_for_url(f"**{mine.get_absolute_url()}#msg-{hit.pk}")
    assert page.evaluate("document.querySelector(':target')?.id") == f"msg-{hit.pk}"


# --- 9. export ---


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1280", "375"])
def test_export_downloads_markdown_and_json(open_page, fake_provider, alice, acme, viewport):
    import json

    fake_provider.scenario(KIMI, {"text": "Kiwis are birds.", "delay_ms": 5})
    conversation = services.conversation_create(tenant=acme, owner=alice)
    page = open_page(alice, viewport=viewport)
    _open(page, conversation)
    _send(page, "What is a kiwi?")
    _wait_done(page, 1)
    answer = Message.objects.get(role="assistant")
    for testid in ("export-markdown", "export-json"):
        page.click("[data-testid=conv-menu]")
        with page.expect_download() as download:
            page.click(f"[data-testid={testid}]")
        body = open(download.value.path(), encoding="utf-8").read()
        page.click("[data-testid=conv-menu]")  # close the menu again
        if testid == "export-markdown":
            assert download.value.suggested_filename == f"kiwiclaw-chat-{conversation.pk}.md"
            assert "## You\n\nWhat is a kiwi?" in body and "Kiwis are birds." in body and "kimi-k2.5" in body
        else:
            data = json.loads(body)
            [row] = [m for m in data["messages"] if m["role"] == "assistant"]
            assert (row["model"], row["output_tokens"]) == ("kimi-k2.5", answer.output_tokens)
            assert row["billed"] == f"{answer.billed}" and data["totals"]["billed"] == f"{answer.billed}"
