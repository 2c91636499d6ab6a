"""A member's limits hold for chat turns too: the tier (refused, nothing saved) and the monthly spend."""

from decimal import Decimal

import pytest

from conversations import services as chat
from conversations.models import Message
from tenants.models import Membership
from tests.billing.conftest import record_usage

from .conftest import set_member_limits


@pytest.fixture
def carol_chat(acme, carol):
    return chat.conversation_create(tenant=acme, owner=carol, tier="max", title="Carol's chat")


def test_a_member_limited_to_auto_cannot_send_on_max_and_nothing_is_saved(acme, carol, carol_chat, spend_redis):
    set_member_limits(Membership.objects.get(user=carol, tenant=acme), tiers=["auto"])
    with pytest.raises(chat.ChatRefused) as info:
        chat.message_send(conversation=carol_chat, author=carol, text="prove it")
    assert str(info.value) == ("Your access in Acme Corp is limited to Auto: the MAX tier is not available to you. "
                               "A workspace admin can change this.")
    assert not Message.objects.filter(conversation=carol_chat).exists()
    assert spend_redis.hlen(f"kc:budget:res:{acme.pk}") == 0
    chat.conversation_set_tier(conversation=carol_chat, tier="auto")
    assert chat.message_send(conversation=carol_chat, author=carol, text="prove it").status == "queued"


def test_a_member_over_their_limit_cannot_send_and_is_told_which_limit(acme, alice, carol, carol_chat, spend_redis):
    set_member_limits(Membership.objects.get(user=carol, tenant=acme), limit="0.10")
    record_usage(acme, source="chat", user_id=carol.pk, input_tokens=0, output_tokens=0,
                 cost=Decimal("0.10") / Decimal("1.3"))
    with pytest.raises(chat.ChatRefused) as info:
        chat.message_send(conversation=carol_chat, author=carol, text="one more")
    assert str(info.value).startswith("The member carol@acme.test has reached its $0.10 monthly spending limit.")
    assert not Message.objects.filter(conversation=carol_chat).exists()
    # Alice, in the same workspace, has no limit of her own.
    alice_chat = chat.conversation_create(tenant=acme, owner=alice, tier="max")
    assert chat.message_send(conversation=alice_chat, author=alice, text="fine").status == "queued"
