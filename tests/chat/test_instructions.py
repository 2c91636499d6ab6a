"""Instructions: the workspace's default (tenant admins) and a conversation's own, sent as the system prompt
through the same routing, counted in the prompt-size estimate, escaped wherever shown."""

import pytest
from django.urls import reverse

from conversations import instructions, lifecycle, services
from conversations.models import ChatSettings, Message
from routing import metering
from routing.cost import estimate_prompt_tokens

from .conftest import integration, wait_finished

KIMI = "kimi-k2.5"
EVIL = '</textarea><script>window.__pwned = 1</script>'


def test_the_system_prompt_is_the_workspace_default_then_the_conversation(settings):
    settings.CHAT_SYSTEM_PROMPT = ""
    assert instructions.system_prompt(workspace=" Be kind. ", conversation="Answer in French.") == \
        "Be kind.\n\nAnswer in French."
    assert instructions.system_prompt(workspace="", conversation="  ") is None
    settings.CHAT_SYSTEM_PROMPT = "You are KiwiClaw."
    assert instructions.system_prompt(workspace=None, conversation="Short.") == "You are KiwiClaw.\n\nShort."


@pytest.mark.django_db
def test_both_are_held_in_the_budget_estimate_of_a_send(acme, alice, alice_chat, chat_redis, monkeypatch, settings):
    settings.CHAT_SYSTEM_PROMPT = ""
    instructions.workspace_instructions_set(tenant=acme, text="Workspace rule. " * 50)
    instructions.conversation_instructions_set(conversation=alice_chat, text="Conversation rule. " * 50)
    held = []
    real_hold = metering.hold
    monkeypatch.setattr(metering, "hold", lambda **kw: (held.append(kw["request"]), real_hold(**kw))[1])
    answer = services.message_send(conversation=alice_chat, author=alice, text="hi")
    [request] = held
    assert request.system.startswith("Workspace rule.") and request.system.endswith("Conversation rule.")
    bare = estimate_prompt_tokens(request.__class__(messages=request.messages, system=None, stream=True))
    assert estimate_prompt_tokens(request) > bare + 100  # counted: ~1,700 characters more
    # The worker's claim reads the same prompt (its own statement reads the workspace default).
    message, claimed = lifecycle.turn_claim(message_id=answer.pk, run_id=__import__("uuid").uuid4())
    assert claimed.system == request.system


@pytest.mark.django_db
def test_the_conversation_instructions_form_saves_and_escapes(client, alice, alice_chat):
    client.force_login(alice)
    response = client.post(reverse("conversations:instructions", args=[alice_chat.pk]), {"instructions": EVIL},
                           HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and "Saved." in response.content.decode()
    alice_chat.refresh_from_db()
    assert alice_chat.instructions == EVIL
    page = client.get(alice_chat.get_absolute_url()).content.decode()
    assert EVIL not in page and "&lt;/textarea&gt;&lt;script&gt;" in page
    too_long = client.post(reverse("conversations:instructions", args=[alice_chat.pk]),
                           {"instructions": "x" * (instructions.MAX_INSTRUCTIONS_CHARS + 1)}, HTTP_HX_REQUEST="true")
    assert too_long.status_code == 422 and "at most 8,000 characters" in too_long.content.decode()
    alice_chat.refresh_from_db()
    assert alice_chat.instructions == EVIL  # unchanged


@pytest.mark.django_db
def test_only_a_workspace_admin_sets_the_default(client, alice, carol, acme):
    client.force_login(carol)  # a plain member
    assert client.get(reverse("conversations:chat_settings")).status_code == 403
    assert client.post(reverse("conversations:chat_settings"), {"default_instructions": "x"}).status_code == 403
    assert not ChatSettings.objects.exists()
    client.force_login(alice)
    page = client.post(reverse("conversations:chat_settings"), {"default_instructions": EVIL}).content.decode()
    assert "Saved." in page and EVIL not in page and "&lt;/textarea&gt;&lt;script&gt;" in page
    assert instructions.workspace_instructions(tenant=acme) == EVIL
    assert 'href="/chat/settings/"' in client.get(reverse("workspace_settings")).content.decode()


@integration
@pytest.mark.slow
def test_the_model_receives_them_as_the_system_prompt(fake_provider, celery_worker, acme, alice, alice_chat,
                                                     chat_redis, settings):
    settings.CHAT_SYSTEM_PROMPT = ""
    fake_provider.scenario(KIMI, {"text": "Bonjour.", "delay_ms": 5})
    instructions.workspace_instructions_set(tenant=acme, text="Always be polite.")
    instructions.conversation_instructions_set(conversation=alice_chat, text="Answer in French.")
    answer = wait_finished(services.message_send(conversation=alice_chat, author=alice, text="Hello there").pk)
    assert answer.status == "done"
    [request] = [r for r in fake_provider.requests() if r["model"] == KIMI]
    assert request["messages"][0] == {"role": "system", "content": "Always be polite.\n\nAnswer in French."} or \
        request.get("system") == "Always be polite.\n\nAnswer in French."
    # The fake counts words + 1 per message, and the system prompt's words: its 6 words are billed input.
    assert Message.objects.get(pk=answer.pk).input_tokens == 2 + 1 + 6


@pytest.mark.django_db
def test_without_htmx_a_refused_instruction_is_said_on_the_page_it_returns_to(client, alice, alice_chat):
    client.force_login(alice)
    response = client.post(reverse("conversations:instructions", args=[alice_chat.pk]),
                           {"instructions": "x" * (instructions.MAX_INSTRUCTIONS_CHARS + 1)}, follow=True)
    assert response.redirect_chain and "at most 8,000 characters" in response.content.decode()
    alice_chat.refresh_from_db()
    assert alice_chat.instructions == ""
