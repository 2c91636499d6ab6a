"""Reads for the chat. Every selector takes the tenant and the user: a conversation is private to its owner,
so another member's conversation and another tenant's answer exactly like a missing id."""

from decimal import Decimal

from django.db.models import Q, QuerySet, Sum
from django.db.models.functions import Coalesce

from tenants.models import Tenant, User

from .models import Conversation, Message

SIDEBAR_LIMIT = 100


def conversation_list(*, tenant: Tenant, user: User, search: str = "") -> QuerySet[Conversation]:
    qs = Conversation.objects.filter(tenant=tenant, owner=user)
    search = (search or "").strip()
    if search:
        qs = qs.filter(title__icontains=search)
    return qs.order_by("-updated_at", "-id")


def conversation_get(*, tenant: Tenant, user: User, conversation_id) -> Conversation:
    """Raises Conversation.DoesNotExist for a missing id, another tenant's and another member's alike."""
    return conversation_list(tenant=tenant, user=user).select_related("tenant__plan").get(pk=conversation_id)


def conversation_cost(*, tenant: Tenant, user: User, conversation: Conversation) -> Decimal:
    """The conversation's running cost: the billed amount of its answers (what the tenant pays)."""
    total = message_list(tenant=tenant, user=user, conversation=conversation).aggregate(
        total=Coalesce(Sum("billed"), Decimal("0"))
    )["total"]
    return total


def message_list(*, tenant: Tenant, user: User, conversation: Conversation) -> QuerySet[Message]:
    """Messages in reading order: each question followed by its answers (a retry sits below the answer it
    replaces), so ordering by (question id, id) needs no per-message query."""
    return (
        Message.objects.filter(tenant=tenant, conversation__owner=user, conversation=conversation)
        .annotate(thread=Coalesce("parent_id", "id"))
        .order_by("thread", "id")
    )


def message_get(*, tenant: Tenant, user: User, message_id, conversation_id=None) -> Message:
    """Raises Message.DoesNotExist for a missing id, another tenant's and another member's alike."""
    qs = Message.objects.filter(tenant=tenant, conversation__owner=user, conversation__tenant=tenant)
    if conversation_id is not None:
        qs = qs.filter(conversation_id=conversation_id)
    return qs.select_related("conversation", "tenant__plan").get(pk=message_id)


def message_history(*, message: Message) -> list[Message]:
    """What the model sees for an assistant message: the conversation up to and including its question.

    Earlier questions count with their latest finished answer only (a retried answer replaces the one before);
    failed turns and empty answers are left out. Internal to the turn runner, which already holds a message
    loaded through a tenant-scoped path.
    """
    rows = list(
        Message.objects.filter(conversation_id=message.conversation_id, tenant_id=message.tenant_id)
        .filter(Q(role=Message.ROLE_USER, id__lte=message.parent_id) | Q(role=Message.ROLE_ASSISTANT, parent_id__lt=message.parent_id))
        .order_by("id")
        .only("id", "role", "content", "status", "parent_id")
    )
    latest_answer: dict[int, Message] = {}
    for row in rows:
        if row.role == Message.ROLE_ASSISTANT and row.content.strip() and row.status in (
            Message.STATUS_DONE,
            Message.STATUS_CANCELLED,
        ):
            latest_answer[row.parent_id] = row
    history = []
    for row in rows:
        if row.role == Message.ROLE_USER:
            history.append(row)
            if row.id in latest_answer:
                history.append(latest_answer[row.id])
    return history


def turns_unfinished_all_tenants() -> QuerySet[Message]:
    """For the heartbeat sweeper (crosses tenants by design): assistant turns not yet finished."""
    return Message.objects.filter(
        role=Message.ROLE_ASSISTANT, status__in=[Message.STATUS_QUEUED, Message.STATUS_STREAMING]
    ).select_related("tenant__plan", "conversation")
