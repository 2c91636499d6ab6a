"""Smart Auto in a real headless Chromium (the fixtures of test_browser.py: uvicorn, a real Celery worker, the
fake provider): the answer's footer says how the turn was routed, and thumbs up is pressed and stored."""

import re

import pytest

from conversations.models import Message
from tenants.models import Tenant
from tests.smart_prompts import HARD, first_message_score

from .conftest import integration, wait_for
from .test_browser import KIMI, OPUS, _last_answer, _send, _wait_done

pytestmark = [integration, pytest.mark.browser, pytest.mark.slow]


def test_alice_sees_the_routing_decision_and_rates_the_answer(open_page, fake_provider, alice, acme):  # noqa: F811
    from routing.smart import router

    Tenant.objects.filter(pk=acme.pk).update(auto_escalation=10)
    fake_provider.scenario(KIMI, {"text": "Kimi's answer.", "delay_ms": 10})
    fake_provider.scenario(OPUS, {"text": "Opus's answer.", "delay_ms": 10})
    text = HARD[0]
    score = first_message_score(text)
    if score >= router().threshold(10):
        expected, badge = f"Auto → {OPUS} · escalated ({score:.2f})", "MAX"
    else:
        expected, badge = f"Auto · {KIMI} ({score:.2f})", "Auto"

    page = open_page(alice)
    page.click("[data-testid=new-chat]")
    _send(page, text)  # the new chat is created with its first message, then opened
    page.wait_for_url(re.compile(r".*/chat/\d+/$"))
    _wait_done(page, 1)
    answer = _last_answer(page)
    assert answer.locator("[data-testid=route-decision]").inner_text() == expected
    assert answer.locator("[data-testid=tier-badge]").inner_text() == badge

    up = answer.locator("[data-testid=feedback-up]")
    assert up.get_attribute("aria-pressed") == "false"
    assert up.get_attribute("aria-label") == "Good answer"
    up.click()
    page.wait_for_selector("article.msg-assistant [data-testid=feedback-up][aria-pressed=true]")
    # The swapped buttons keep their ids, so htmx gives focus back to the pressed one (keyboard users stay put).
    assert page.evaluate("document.activeElement.dataset.testid") == "feedback-up"
    assert answer.locator("[data-testid=feedback-down]").get_attribute("aria-pressed") == "false"
    message = Message.objects.get(conversation__owner=alice, role="assistant")
    wait_for(lambda: Message.objects.get(pk=message.pk).feedback == 1, what="feedback stored")

    page.reload()  # rendered from the database this time
    assert _last_answer(page).locator("[data-testid=feedback-up]").get_attribute("aria-pressed") == "true"
    assert _last_answer(page).locator("[data-testid=route-decision]").inner_text() == expected
