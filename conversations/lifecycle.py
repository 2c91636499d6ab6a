"""A turn's lifecycle: the writes that move an assistant message from queued to finished.

    queued ──claim──▶ streaming ──complete──▶ done | cancelled | failed (billed)
       │                  ├──fail──▶ failed (before any text: unbilled, hold released)
       │                  ├──fail_partial──▶ failed (its worker died mid-answer: estimated tokens billed)
       │                  └──requeue──▶ queued (its worker died before any text)
       └──end_queued──▶ cancelled | failed (nobody claimed it: unbilled, hold released)

Called by the runner (`conversations.turns`, on a Celery worker), the heartbeat sweeper
(`conversations.sweeper`) and a user's stop (`services.message_stop`). Each write after the claim is one
transaction that locks the message and checks the run still owns it, so a redelivered task, a zombie worker
and the sweeper cannot end a turn twice; the usage row's unique key (`chat:<message id>`) guards against billing
twice. Money goes through `routing.metering`, the same path the proxy's calls take.

A completion the database cannot take (it is down when the answer ends) is not lost: `turn_complete_later` keeps
the turn's final state — text, real token counts, the answering endpoint, the whole routing result — in the
outbox (`billing.outbox`, kind `chat_turn`, key `chat:<message id>`), and the outbox applies it through
`turn_complete` once the database answers, so the turn ends `done` with its real counts. The sweeper leaves a
turn whose completion is waiting there alone (`billing.outbox.pending`).

The Redis side effects after a commit (the stream's end marker, the hold's release, a re-enqueue) run as
robust on-commit callbacks: the database write is the turn's truth, and Redis being away must not turn a
committed end into an error (a reader falls back to the database; a hold lapses; the sweeper re-enqueues).
"""

import datetime
import logging
import uuid
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from billing import outbox
from routing import metering
from routing.types import ChatMessage, ChatRequest, RouteResult
from tenants.models import AUTO_ESCALATION_OFF, TIER_AUTO, TIER_MAX, Membership, Tenant

from . import instructions, sql, streams
from .models import Conversation, Message
from .selectors import message_history

logger = logging.getLogger(__name__)


def turn_request(*, message: Message, history: list[ChatMessage] | None = None,
                 workspace_instructions: str | None = None) -> ChatRequest:
    """The routing request for an assistant message: the conversation history up to its question, and the
    system prompt (the workspace's default instructions, then the conversation's: conversations.instructions).
    What the caller did not read with its own statement is read here. A MAX turn marks the end of its stable
    history as a cache breakpoint (Anthropic prompt caching), so the next turn reads that prefix at the cache price."""
    if history is None:
        history = message_history(message=message)
    if workspace_instructions is None:
        workspace_instructions = instructions.workspace_instructions(tenant=message.tenant)
    system = instructions.system_prompt(workspace=workspace_instructions,
                                        conversation=message.conversation.instructions)
    return ChatRequest(messages=history, system=system, stream=True, cache_breakpoint=message.tier == "max")


def enqueue(message_id: int) -> None:
    """Send the turn to a worker. Call after the row is committed (through `transaction.on_commit`)."""
    from .tasks import run_turn  # tasks import the runner, which imports this module

    run_turn.delay(message_id)


def turn_end_queued(*, message: Message, status: str, error: str) -> bool:
    """End a turn no worker has claimed yet (the UPDATE re-checks `queued`, so a claim racing it wins or loses
    whole): unbilled, its hold released, its stream ended. Returns whether it was still queued."""
    with transaction.atomic():
        ended = Message.objects.filter(pk=message.pk, status=Message.STATUS_QUEUED).update(
            status=status, finished_at=timezone.now(), error=error
        )
        if ended:
            tenant, key = message.tenant, message.usage_key
            transaction.on_commit(lambda: _after_unbilled_end(tenant=tenant, key=key, message_id=message.pk,
                                                             status=status), robust=True)
    return bool(ended)


def turn_claim(*, message_id: int, run_id: uuid.UUID) -> tuple[Message, ChatRequest] | None:
    """Take a queued turn for one run: returns the message (its tenant, plan and conversation loaded) and its
    routing request, or None when there is nothing to do: the message is gone, finished, or another run owns it
    (a redelivered task). A suspended tenant's turn fails here, unbilled.

    One statement (`sql.claim`): it takes the turn and, in the same round trip, returns the tenant, its plan
    and the history."""
    claimed = sql.claim(message_id=message_id, run_id=run_id)
    if claimed is None:
        return None
    message, history, workspace = claimed
    if not message.tenant.is_active:
        turn_fail(message=message, run_id=run_id, error="This workspace is suspended; the message was not answered.")
        return None
    _hold_escalation_for_auto_only_members(message)
    return message, turn_request(message=message, history=history, workspace_instructions=workspace)


def _hold_escalation_for_auto_only_members(message: Message) -> None:
    """A member limited to Auto must not reach MAX models through smart Auto's escalation either: their turn
    routes with the dial off. The tenant object is this message's own, so only this turn sees it. One query, and
    only for an Auto turn in a workspace whose dial is on."""
    tenant = message.tenant
    if message.tier != TIER_AUTO or tenant.escalation_level == AUTO_ESCALATION_OFF:
        return
    membership = Membership.objects.filter(tenant=tenant, user_id=message.conversation.owner_id).first()
    if membership is not None and not membership.allows_tier(TIER_MAX):
        tenant.auto_escalation = AUTO_ESCALATION_OFF


def turn_complete(*, message: Message, run_id: uuid.UUID, result: RouteResult,
                  ended_at: datetime.datetime | None = None) -> bool:
    """Store the answer and the routing facts and write the usage row, in one transaction.

    The usage row is written even when the message was deleted meanwhile (the tokens were spent). Returns
    False when another run or the sweeper already ended the turn (its usage row, same key, stands).
    `ended_at`: when the answer ended, for a completion applied later from the outbox (default: now)."""
    status = {
        "cancelled": Message.STATUS_CANCELLED,
        "error": Message.STATUS_FAILED,
    }.get(result.finish_reason, Message.STATUS_DONE)
    with transaction.atomic():
        current = Message.objects.select_for_update().filter(pk=message.pk).first()
        if current is not None and (current.status != Message.STATUS_STREAMING or current.run_id != run_id):
            return False
        usage = _record_usage(message=message, result=result)
        if current is None:
            return False
        _apply_result(current, result, ended_at=ended_at)
        current.status = status
        current.billed = usage.billed if usage is not None else Decimal("0")
        if status == Message.STATUS_FAILED:
            current.error = result.error or "The answer was cut off by a provider error."
        current.finished_at = ended_at or timezone.now()
        current.save()
        Conversation.objects.filter(pk=current.conversation_id).update(updated_at=timezone.now())
        transaction.on_commit(lambda: streams.stream_end(current.pk, status), robust=True)
        return True


def turn_complete_later(*, message: Message, run_id: uuid.UUID, result: RouteResult) -> None:
    """`turn_complete`, deferred: the database could not take the turn's end, so its whole final state goes to
    the outbox (durable when this returns) and is applied by `turn_complete_payload` once the database answers.
    Raises OSError only if nothing could keep it."""
    outbox.put(kind="chat_turn", key=message.usage_key, payload={
        "message_id": message.pk, "run_id": str(run_id), "ended_at": timezone.now().isoformat(),
        "usage": metering.usage_payload(tenant_id=message.tenant_id, source="chat", key=message.usage_key,
                                        user_id=message.conversation.owner_id, api_key_id=None, result=result),
    })


def turn_complete_payload(payload: dict) -> None:
    """The outbox's `chat_turn` handler: end the turn as `turn_complete` would have (idempotent: a turn no
    longer streaming under that run is left as it is; the usage key makes a second row impossible). A message
    deleted meanwhile still gets its usage row."""
    result = metering.result_from_dict(payload["usage"]["result"])
    message = (Message.objects.select_related("tenant__plan", "conversation")
               .filter(pk=payload["message_id"]).first())
    if message is None:
        metering.record_payload(payload["usage"])
        return
    turn_complete(message=message, run_id=uuid.UUID(payload["run_id"]), result=result,
                  ended_at=datetime.datetime.fromisoformat(payload["ended_at"]))


outbox.register("chat_turn", turn_complete_payload)


def turn_fail(*, message: Message, run_id: uuid.UUID, error: str, attempts: list | None = None) -> bool:
    """A turn that failed before its first delta: failed, readable error, reservation released, no charge."""
    with transaction.atomic():
        current = Message.objects.select_for_update().filter(pk=message.pk).first()
        if current is None:
            transaction.on_commit(lambda: metering.release(tenant=message.tenant, key=message.usage_key),
                                  robust=True)
            return False
        if current.status != Message.STATUS_STREAMING or current.run_id != run_id:
            return False
        if attempts is not None:
            current.attempts = [a.as_dict() if hasattr(a, "as_dict") else a for a in attempts]
        current.tenant = message.tenant
        _mark_failed(current, error=error)
        return True


def turn_fail_partial(*, message: Message, text: str) -> bool:
    """A turn whose worker died after publishing deltas: failed, partial text kept, estimated tokens billed
    (`metering.estimated_result`) under the turn's usage key, so a late finish by a zombie worker cannot bill
    again. `message` is the streaming message as the sweeper read it (its run_id is the dead run's)."""
    with transaction.atomic():
        current = Message.objects.select_for_update().filter(pk=message.pk).first()
        if current is None or current.status != Message.STATUS_STREAMING or current.run_id != message.run_id:
            return False
        result = metering.estimated_result(
            tier=message.tier, prompt="\n".join(m.content for m in message_history(message=message)), text=text,
            reason="Ended by the heartbeat sweeper: the worker stopped mid-answer.",
            error="The worker answering this message stopped.",
        )
        usage = _record_usage(message=message, result=result)
        _apply_result(current, result)
        current.status = Message.STATUS_FAILED
        current.error = "The worker answering this message stopped; the answer is incomplete. Retry to get a full answer."
        current.billed = usage.billed if usage is not None else Decimal("0")
        current.finished_at = timezone.now()
        current.save()
        message_id = current.pk

        def after():
            streams.stop_flag_set(message_id)  # a zombie worker publishes nothing more
            streams.stream_end(message_id, Message.STATUS_FAILED)

        transaction.on_commit(after, robust=True)
        return True


def turn_requeue(*, message: Message) -> bool:
    """A claimed turn whose worker died before any delta: back to the queue (nothing was spent), or failed after
    CHAT_MAX_RUNS runs."""
    with transaction.atomic():
        current = Message.objects.select_for_update().filter(pk=message.pk).first()
        if current is None or current.status != Message.STATUS_STREAMING or current.run_id != message.run_id:
            return False
        if current.run_count >= settings.CHAT_MAX_RUNS:
            current.tenant = message.tenant
            _mark_failed(current, error="This answer could not be generated (its worker stopped repeatedly). Please retry.")
            return True
        current.status = Message.STATUS_QUEUED
        current.run_id = None
        current.started_at = None
        current.save(update_fields=["status", "run_id", "started_at"])
        transaction.on_commit(lambda: enqueue(current.pk), robust=True)
        return True


def _mark_failed(message: Message, *, error: str) -> None:
    """Call inside a transaction holding the message row."""
    message.status = Message.STATUS_FAILED
    message.error = error
    message.finished_at = timezone.now()
    message.save(update_fields=["status", "error", "finished_at", "attempts"])
    tenant, key, message_id = message.tenant, message.usage_key, message.pk
    transaction.on_commit(lambda: _after_unbilled_end(tenant=tenant, key=key, message_id=message_id,
                                                     status=Message.STATUS_FAILED), robust=True)


def _after_unbilled_end(*, tenant: Tenant, key: str, message_id: int, status: str) -> None:
    metering.release(tenant=tenant, key=key)
    streams.stream_end(message_id, status)


def _record_usage(*, message: Message, result: RouteResult):
    """The one usage row of a turn, key `chat:<id>`. Call inside the turn's final transaction."""
    return metering.record(tenant=message.tenant, source="chat", key=message.usage_key,
                           user_id=message.conversation.owner_id, api_key_id=None, result=result)


def _apply_result(message: Message, result: RouteResult, ended_at: datetime.datetime | None = None) -> None:
    usage = result.usage
    message.content = result.text
    message.tier = result.tier or message.tier
    message.endpoint = result.endpoint or ""
    message.provider = result.provider or ""
    message.upstream_model = result.upstream_model or ""
    message.attempts = [a.as_dict() for a in result.attempts]
    message.fallback_count = result.fallback_count
    message.routing_reason = (result.reason or "")[:200]
    message.finish_reason = result.finish_reason
    smart = result.smart
    message.route_score = smart.score if smart else None
    message.route_threshold = smart.threshold if smart else None
    message.route_escalated = smart.escalated if smart else None
    message.router_version = smart.version if smart else ""
    message.input_tokens = usage.input_tokens
    message.output_tokens = usage.output_tokens
    message.cache_read_tokens = usage.cache_read_tokens
    message.cache_write_tokens = usage.cache_write_tokens
    message.output_estimated = usage.output_estimated
    message.cost = result.cost
    ok = [a for a in result.attempts if a.outcome == "ok"]
    if ok and ok[-1].ttft_ms is not None:
        message.ttft_ms = round(ok[-1].ttft_ms)
    if message.started_at:
        message.latency_ms = round(((ended_at or timezone.now()) - message.started_at).total_seconds() * 1000)
