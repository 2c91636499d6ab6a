"""Instructions: the workspace's default (set by its admins) and a conversation's own, sent to the model as the
system prompt through the same routing as every turn, and counted in the prompt-size estimate like any other
prompt text (routing.cost.estimate_prompt_tokens reads `ChatRequest.system`).

Reads and writes of both live here; the send and the claim read the workspace default inside their own
statement (conversations/sql.py), so it costs no extra round trip on the way to the first word.
"""

from django.conf import settings

from tenants.models import Tenant

from .models import ChatSettings, Conversation

MAX_INSTRUCTIONS_CHARS = 8_000


class InstructionsRefused(ValueError):
    """Instructions that cannot be saved; `str(exc)` is fit to show people."""


def system_prompt(*, workspace: str | None, conversation: str | None) -> str | None:
    """The system prompt of a turn: the deployment's (CHAT_SYSTEM_PROMPT), the workspace's default
    instructions, then the conversation's, blank parts left out; None when all are blank."""
    parts = [settings.CHAT_SYSTEM_PROMPT, workspace, conversation]
    text = "\n\n".join(part.strip() for part in parts if part and part.strip())
    return text or None


def workspace_instructions(*, tenant: Tenant) -> str:
    return ChatSettings.objects.filter(tenant=tenant).values_list("default_instructions", flat=True).first() or ""


def _clean(text) -> str:
    text = (text or "").replace("\r\n", "\n").strip()
    if len(text) > MAX_INSTRUCTIONS_CHARS:
        raise InstructionsRefused(f"Instructions can be at most {MAX_INSTRUCTIONS_CHARS:,} characters; these are "
                                  f"{len(text):,}.")
    return text


def workspace_instructions_set(*, tenant: Tenant, text: str) -> ChatSettings:
    """The workspace's default instructions (empty: none). Call for a tenant admin only."""
    row, _ = ChatSettings.objects.update_or_create(tenant=tenant, defaults={"default_instructions": _clean(text)})
    return row


def conversation_instructions_set(*, conversation: Conversation, text: str) -> Conversation:
    conversation.instructions = _clean(text)
    conversation.save(update_fields=["instructions", "updated_at"])
    return conversation
