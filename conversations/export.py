"""Export a conversation as Markdown (the turns as on screen, each answer with its model, tokens and cost) or as
JSON (every message, every version, with its routing and money facts, and the totals). Money stays Decimal: JSON
carries it as strings, never floats."""

import json
from decimal import Decimal

from django.contrib.auth.decorators import login_required
from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpResponse
from django.utils import timezone
from django.views.decorators.http import require_GET

from . import selectors
from .models import Conversation, Message
from .templatetags.chat import usd
from .views import _conversation, _tenant

MONEY_FIELDS = ("cost", "billed")
MESSAGE_FIELDS = ("id", "role", "content", "status", "parent_id", "version_of_id", "tier", "endpoint", "provider",
                  "upstream_model", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
                  "output_estimated", "cost", "billed", "error", "created_at", "finished_at")


def _totals(messages: list[Message]) -> dict:
    """Every answer counted, every version too: each was billed."""
    answers = [m for m in messages if m.role == Message.ROLE_ASSISTANT]
    return {
        "answers": len(answers),
        "input_tokens": sum(m.input_tokens for m in answers),
        "output_tokens": sum(m.output_tokens for m in answers),
        "cost": sum((m.cost for m in answers), Decimal("0")),
        "billed": sum((m.billed for m in answers), Decimal("0")),
    }


def export_data(*, conversation: Conversation, messages: list[Message]) -> dict:
    turns = selectors.turns_from(messages)
    shown = {m.pk for t in turns for m in (t.question, t.answer) if m is not None}
    rows = []
    for m in messages:
        row = {name: getattr(m, name) for name in MESSAGE_FIELDS}
        row["parent"], row["version_of"] = row.pop("parent_id"), row.pop("version_of_id")
        row["model"] = m.upstream_model or m.endpoint
        row["shown"] = m.pk in shown
        rows.append(row)
    return {
        "conversation": {"id": conversation.pk, "title": conversation.title, "tier": conversation.tier,
                         "instructions": conversation.instructions, "created_at": conversation.created_at,
                         "updated_at": conversation.updated_at},
        "exported_at": timezone.now(),
        "messages": rows,
        "totals": _totals(messages),
    }


def export_markdown_text(*, conversation: Conversation, messages: list[Message]) -> str:
    totals = _totals(messages)
    lines = [f"# {conversation.title}", "",
             f"Exported from KiwiClaw on {timezone.localtime():%Y-%m-%d %H:%M}. "
             f"Tier: {conversation.get_tier_display()}. {totals['answers']} answer(s), "
             f"{totals['input_tokens']:,} input and {totals['output_tokens']:,} output tokens, billed "
             f"{usd(totals['billed'])} (every version counted).", ""]
    if conversation.instructions:
        lines += ["## Instructions", "", conversation.instructions, ""]
    for turn in selectors.turns_from(messages):
        lines += ["## You", "", turn.question.content, ""]
        answer = turn.answer
        if answer is None:
            continue
        version = f" (version {turn.index} of {turn.count})" if turn.count > 1 else ""
        lines += [f"## Assistant{version}", "", answer.content or f"_({answer.get_status_display().lower()})_", ""]
        facts = [answer.upstream_model or answer.endpoint or "no model answered",
                 f"{answer.input_tokens:,} in / {answer.output_tokens:,} out tokens", usd(answer.billed)]
        if answer.error:
            facts.append(f"error: {answer.error}")
        lines += ["_" + " · ".join(facts) + "_", ""]
    return "\n".join(lines).rstrip() + "\n"


def _messages(request, conversation) -> list[Message]:
    return list(selectors.message_list(tenant=_tenant(request), user=request.user, conversation=conversation))


def _attachment(body: str, content_type: str, filename: str) -> HttpResponse:
    response = HttpResponse(body, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@login_required
@require_GET
def export_markdown(request, conversation_id):
    conversation = _conversation(request, conversation_id)
    body = export_markdown_text(conversation=conversation, messages=_messages(request, conversation))
    return _attachment(body, "text/markdown; charset=utf-8", f"kiwiclaw-chat-{conversation.pk}.md")


@login_required
@require_GET
def export_json(request, conversation_id):
    conversation = _conversation(request, conversation_id)
    data = export_data(conversation=conversation, messages=_messages(request, conversation))
    body = json.dumps(data, cls=DjangoJSONEncoder, indent=2, ensure_ascii=False)
    return _attachment(body, "application/json", f"kiwiclaw-chat-{conversation.pk}.json")
