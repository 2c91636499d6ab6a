"""Writes for the chat: one function per use case, keyword-only.

Two families:
- what people do (create, rename, delete, switch tier, send, stop, retry), called by the views;
- what the turn runner does (claim, complete, fail, requeue), called by `conversations.turns` on a Celery
  worker and by the heartbeat sweeper. Each ends a turn in one transaction that checks the run still owns the
  message, and the usage row's unique key (`chat:<message id>`) guards against billing twice.

Refusals raise `ChatRefused` with a message for people and change nothing.
"""

import logging
import uuid
from decimal import Decimal

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from billing.budget import BudgetExceeded, budget_release, budget_reserve
from billing.services import usage_record
from routing.cost import estimate_max_cost
from routing.errors import RoutingError
from routing.metering import usage_row
from routing.types import ChatMessage, ChatRequest, RouteResult
from tenants.models import TIER_AUTO, TIER_MAX, Tenant, User

from . import streams
from .models import DEFAULT_TITLE, Conversation, Message
from .selectors import history_from_rows, history_sql, message_history

logger = logging.getLogger(__name__)

MAX_MESSAGE_CHARS = 32_000
MAX_TITLE_CHARS = 200
TIER_NAMES = {TIER_AUTO: "Auto", TIER_MAX: "MAX"}


class ChatRefused(Exception):
    """A refused action. `str(exc)` is fit to show people; nothing was saved."""


# --- conversations ---


def conversation_create(*, tenant: Tenant, owner: User, tier: str = TIER_AUTO, title: str = "") -> Conversation:
    tier = _valid_tier(tier)
    if not tenant.plan.allows_tier(tier):
        tier = TIER_AUTO  # a new conversation starts on what the plan allows
    title = (title or "").strip()[:MAX_TITLE_CHARS] or DEFAULT_TITLE
    return Conversation.objects.create(tenant=tenant, owner=owner, tier=tier, title=title)


def conversation_rename(*, conversation: Conversation, title: str) -> Conversation:
    title = " ".join((title or "").split())
    if not title:
        raise ChatRefused("A title cannot be empty.")
    if len(title) > MAX_TITLE_CHARS:
        raise ChatRefused(f"A title can be at most {MAX_TITLE_CHARS} characters.")
    conversation.title = title
    conversation.save(update_fields=["title", "updated_at"])
    return conversation


def conversation_delete(*, conversation: Conversation) -> None:
    """Delete a conversation and its messages. Running turns are stopped; what they already generated is still
    billed by the worker (the usage row does not depend on the message row)."""
    running = list(
        conversation.messages.filter(status__in=[Message.STATUS_QUEUED, Message.STATUS_STREAMING]).values_list(
            "id", flat=True
        )
    )
    for message_id in running:
        streams.stop_flag_set(message_id)
    conversation.delete()
    for message_id in running:
        # A queued turn never reaches the worker's claim (the row is gone), so its reservation goes now.
        budget_release(tenant=conversation.tenant, key=f"chat:{message_id}")


def conversation_set_tier(*, conversation: Conversation, tier: str) -> Conversation:
    tier = _valid_tier(tier)
    plan = conversation.tenant.plan
    if not plan.allows_tier(tier):
        raise ChatRefused(_tier_refusal(tier, plan))
    if conversation.tier != tier:
        conversation.tier = tier
        conversation.save(update_fields=["tier", "updated_at"])
    return conversation


def _valid_tier(tier: str) -> str:
    if tier not in TIER_NAMES:
        raise ChatRefused("Choose a tier: Auto or MAX.")
    return tier


def _tier_refusal(tier: str, plan) -> str:
    return f"{TIER_NAMES[tier]} is not part of the {plan.name} plan — ask your admin to upgrade."


# --- sending, retrying, stopping ---


def message_send(*, conversation: Conversation, author: User, text: str) -> Message:
    """Save the user's message and a queued assistant message, reserve budget for the turn, enqueue it.

    Returns the assistant message. Raises ChatRefused (empty or too long text, tier not in the plan, budget
    exhausted, suspended tenant) with nothing saved and nothing reserved. A new chat is named after its first
    message.
    """
    text = _clean_text(text)
    tenant = conversation.tenant
    _check_can_run(tenant=tenant, tier=conversation.tier)
    question = Message(tenant=tenant, conversation=conversation, role=Message.ROLE_USER, content=text,
                       status=Message.STATUS_DONE)
    title = _title_from(text) if conversation.title == DEFAULT_TITLE else None
    return _turn_start(conversation=conversation, question=question, retry_of=None, title=title)


def message_retry(*, message: Message, author: User) -> Message:
    """Answer the same question again in a new assistant message (a new usage key); the old answer is kept.
    Runs on the conversation's current tier."""
    if message.role != Message.ROLE_ASSISTANT or message.parent_id is None:
        raise ChatRefused("Only an answer can be retried.")
    if not message.is_finished:
        raise ChatRefused("This answer is still being generated.")
    conversation = message.conversation
    _check_can_run(tenant=conversation.tenant, tier=conversation.tier)
    return _turn_start(conversation=conversation, question=message.parent, retry_of=message, title=None)


def message_stop(*, message: Message) -> Message:
    """Stop a turn. A running turn sees the flag before its next delta (and publishes no delta after it); the
    worker then stores the partial answer and bills it. A turn still queued is cancelled here, unbilled."""
    if message.role != Message.ROLE_ASSISTANT:
        raise ChatRefused("Only an answer can be stopped.")
    if message.is_finished:
        return message
    streams.stop_flag_set(message.pk)
    _end_queued(message=message, status=Message.STATUS_CANCELLED, error="Stopped before it started.")
    message.refresh_from_db()
    return message


def _end_queued(*, message: Message, status: str, error: str) -> bool:
    """End a turn no worker has claimed yet (the UPDATE re-checks `queued`, so a claim racing it wins or loses
    whole): unbilled, its reservation released, its stream ended. Returns whether it was still queued."""
    with transaction.atomic():
        ended = Message.objects.filter(pk=message.pk, status=Message.STATUS_QUEUED).update(
            status=status, finished_at=timezone.now(), error=error
        )
        if ended:
            tenant, key = message.tenant, message.usage_key
            transaction.on_commit(lambda: _after_unbilled_end(tenant=tenant, key=key, message_id=message.pk,
                                                             status=status))
    return bool(ended)


def _clean_text(text) -> str:
    text = (text or "").strip()
    if not text:
        raise ChatRefused("Type a message first.")
    if len(text) > MAX_MESSAGE_CHARS:
        raise ChatRefused(
            f"Your message is {len(text):,} characters; the limit is {MAX_MESSAGE_CHARS:,}. Shorten it and send again."
        )
    return text


def _title_from(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= 60 else line[:59].rstrip() + "…"


def _check_can_run(*, tenant: Tenant, tier: str) -> None:
    if not tenant.is_active:
        raise ChatRefused("This workspace is suspended; new messages cannot be sent.")
    if not tenant.plan.allows_tier(tier):
        raise ChatRefused(_tier_refusal(tier, tenant.plan))


def _turn_start(*, conversation: Conversation, question: Message, retry_of: Message | None,
                title: str | None) -> Message:
    """Insert the queued answer (and its question, when new), reserve the turn's budget, enqueue it.

    One statement, which is its own transaction, inserts the rows, moves the conversation to the top of the
    sidebar (and names a new chat) and reads the history the budget estimate needs: this is the path between
    Enter and the first word, and as a transaction of ORM calls it was six round trips and ~5 ms of CPU. The
    hold is keyed by the answer's id, so it comes right after; a refused hold deletes the rows again and puts
    the conversation back, so a refused send leaves nothing. (Should the process die in between, the queued
    answer is found by the heartbeat sweeper, which reserves again before it enqueues.) Call it outside a
    transaction: a caller's rollback would leave the hold in place until it expires.
    """
    tenant = conversation.tenant
    answer = Message(tenant=tenant, conversation=conversation, role=Message.ROLE_ASSISTANT,
                     status=Message.STATUS_QUEUED, tier=conversation.tier, parent=question, retry_of=retry_of)
    before = (conversation.title, conversation.updated_at)
    conversation.updated_at = timezone.now()
    conversation.title = title or conversation.title
    history = _insert_turn(conversation=conversation, question=question, answer=answer)
    try:
        _hold_budget(message=answer, request=turn_request(message=answer, history=history))
    except ChatRefused:
        Message.objects.filter(pk__in=[answer.pk] if retry_of else [answer.pk, question.pk]).delete()
        Conversation.objects.filter(pk=conversation.pk).update(title=before[0], updated_at=before[1])
        conversation.title, conversation.updated_at = before
        raise
    transaction.on_commit(lambda: _enqueue(answer.pk))  # at once, unless a caller's transaction is open
    return answer


def _hold_budget(*, message: Message, request: ChatRequest) -> None:
    """Reserve the turn's estimated maximum cost under its usage key (again: the same key replaces the hold).
    Raises ChatRefused with the reason (budget exhausted, no endpoint for the tier)."""
    try:
        cost = estimate_max_cost(tenant=message.tenant, tier=message.tier, request=request)
        budget_reserve(tenant=message.tenant, key=message.usage_key, cost=cost)
    except (BudgetExceeded, RoutingError) as exc:
        raise ChatRefused(str(exc)) from exc


def _insert_values(message: Message, *, parent: str | None = None) -> tuple[str, str, list]:
    """(columns, values, params) of the INSERT that `message.save()` would send: Django's own preparation of
    each field (defaults, auto_now_add, JSON). `parent` puts an SQL expression in place of parent_id."""
    columns, values, params = [], [], []
    for field in Message._meta.concrete_fields:
        if field.primary_key:
            continue
        columns.append(connection.ops.quote_name(field.column))
        value = field.pre_save(message, add=True)
        if field.attname == "parent_id" and parent is not None:
            values.append(parent)
        else:
            values.append("%s")
            params.append(field.get_db_prep_save(value, connection))
    return ", ".join(columns), ", ".join(values), params


def _insert_turn(*, conversation: Conversation, question: Message, answer: Message) -> list[ChatMessage]:
    """One statement: INSERT the question (when new) and the answer, UPDATE the conversation, SELECT the
    history. Sets the new rows' ids; returns the history the answer is asked with."""
    table = Message._meta.db_table
    parts, params = [], []
    if question.pk is None:
        columns, values, question_params = _insert_values(question)
        parts.append(f"q AS (INSERT INTO {table} ({columns}) VALUES ({values}) RETURNING id)")
        params += question_params
    else:
        parts.append("q AS (SELECT %s::bigint AS id)")
        params.append(question.pk)
    # INSERT ... SELECT FROM q: the question's row (and id) is made before the answer's, so ids keep the order.
    columns, values, answer_params = _insert_values(answer, parent="q.id")
    parts.append(f"a AS (INSERT INTO {table} ({columns}) SELECT {values} FROM q RETURNING id, parent_id)")
    params += answer_params
    parts.append(f"c AS (UPDATE {Conversation._meta.db_table} SET title = %s, updated_at = %s WHERE id = %s)")
    params += [conversation.title, conversation.updated_at, conversation.pk]
    history = history_sql(conversation="%s", tenant="%s", question="a.parent_id")
    params += [conversation.pk, conversation.tenant_id]
    sql = (f"WITH {', '.join(parts)} SELECT a.id, a.parent_id, h.* FROM a "
           f"LEFT JOIN LATERAL ({history}) h ON true ORDER BY h.id")
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    answer.pk, question.pk = rows[0][0], rows[0][1]
    answer.parent = question
    for message in (question, answer):
        message._state.adding = False
    # The statement does not see its own inserts: a new question is added to the history here.
    earlier = [row[2:] for row in rows if row[2] is not None]
    history = history_from_rows(earlier)
    if not any(row[0] == question.pk for row in earlier):
        history.append(ChatMessage(role=Message.ROLE_USER, content=question.content))
    return history


def _enqueue(message_id: int) -> None:
    from .tasks import run_turn  # tasks import the runner, which imports this module

    run_turn.delay(message_id)


def turn_request(*, message: Message, history: list[ChatMessage] | None = None) -> ChatRequest:
    """The routing request for an assistant message: the conversation history up to its question."""
    if history is None:
        history = message_history(message=message)
    return ChatRequest(messages=history, system=settings.CHAT_SYSTEM_PROMPT or None, stream=True)


# --- the turn runner's writes ---

_MESSAGE_CLAIMED = ("id", "tenant_id", "conversation_id", "role", "status", "parent_id", "tier", "run_id",
                    "run_count", "started_at")
_CONVERSATION_CLAIMED = ("id", "tenant_id", "owner_id", "tier")


def _columns(alias: str, model, attnames=None) -> str:
    fields = model._meta.concrete_fields
    if attnames is not None:
        fields = [model._meta.get_field(name) for name in attnames]  # get_field takes an FK's attname too
    return ", ".join(f"{alias}.{connection.ops.quote_name(f.column)}" for f in fields)


def _attnames(model) -> list[str]:
    return [f.attname for f in model._meta.concrete_fields]


def _claim_sql() -> str:
    message, conversation = Message._meta.db_table, Conversation._meta.db_table
    return (
        f"WITH claimed AS (UPDATE {message} SET status = %s, run_id = %s, run_count = run_count + 1, "
        f"started_at = %s WHERE id = %s AND role = %s AND status = %s "
        f"RETURNING {', '.join(_MESSAGE_CLAIMED)}) "
        f"SELECT {_columns('m', Message, _MESSAGE_CLAIMED)}, {_columns('c', Conversation, _CONVERSATION_CLAIMED)}, "
        f"{_columns('t', Tenant)}, {_columns('p', Tenant.plan.field.related_model)}, "
        f"h.id, h.role, h.content, h.status, h.parent_id "
        f"FROM claimed m JOIN {conversation} c ON c.id = m.conversation_id "
        f"JOIN {Tenant._meta.db_table} t ON t.id = m.tenant_id "
        f"JOIN {Tenant.plan.field.related_model._meta.db_table} p ON p.id = t.plan_id "
        f"LEFT JOIN LATERAL ({history_sql(conversation='m.conversation_id', tenant='m.tenant_id', question='m.parent_id')}) "
        f"h ON true ORDER BY h.id"
    )


def turn_claim(*, message_id: int, run_id: uuid.UUID) -> tuple[Message, ChatRequest] | None:
    """Take a queued turn for one run: returns the message (its tenant, plan and conversation loaded) and its
    routing request, or None when there is nothing to do: the message is gone, finished, or another run owns it
    (a redelivered task). A suspended tenant's turn fails here, unbilled.

    One statement: the UPDATE takes the turn (its WHERE re-checks `queued` on the row it locks, so of two runs
    racing for the same message exactly one wins), and the same round trip returns the tenant, its plan and the
    history. It is plain SQL because it sits between the user pressing Enter and the first word: through the
    ORM (an update, a select_related get and the history query) it cost about 8 ms of CPU, ten times this.
    The rows hold plain column types (no field needs a database converter), so `from_db` builds the instances.
    """
    plan_model = Tenant.plan.field.related_model
    with connection.cursor() as cursor:
        cursor.execute(_claim_sql(), [Message.STATUS_STREAMING, run_id, timezone.now(), message_id,
                                      Message.ROLE_ASSISTANT, Message.STATUS_QUEUED])
        rows = cursor.fetchall()
    if not rows:
        return None
    widths = [len(_MESSAGE_CLAIMED), len(_CONVERSATION_CLAIMED), len(_attnames(Tenant)), len(_attnames(plan_model))]
    first, parts, at = rows[0], [], 0
    for width in widths:
        parts.append(first[at:at + width])
        at += width
    db = connection.alias
    message = Message.from_db(db, _MESSAGE_CLAIMED, parts[0])
    message.conversation = Conversation.from_db(db, _CONVERSATION_CLAIMED, parts[1])
    message.tenant = Tenant.from_db(db, _attnames(Tenant), parts[2])
    message.tenant.plan = plan_model.from_db(db, _attnames(plan_model), parts[3])
    if not message.tenant.is_active:
        turn_fail(message=message, run_id=run_id, error="This workspace is suspended; the message was not answered.")
        return None
    history = history_from_rows([row[at:] for row in rows if row[at] is not None])
    return message, turn_request(message=message, history=history)


def turn_complete(*, message: Message, run_id: uuid.UUID, result: RouteResult) -> bool:
    """Store the answer and the routing facts and write the usage row, in one transaction.

    The usage row is written even when the message was deleted meanwhile (the tokens were spent). Returns
    False when another run or the sweeper already ended the turn (its usage row, same key, stands)."""
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
        _apply_result(current, result)
        current.status = status
        current.billed = usage.billed if usage is not None else Decimal("0")
        if status == Message.STATUS_FAILED:
            current.error = result.error or "The answer was cut off by a provider error."
        current.finished_at = timezone.now()
        current.save()
        Conversation.objects.filter(pk=current.conversation_id).update(updated_at=timezone.now())
        transaction.on_commit(lambda: streams.stream_end(current.pk, status))
        return True


def turn_fail(*, message: Message, run_id: uuid.UUID, error: str, attempts: list | None = None) -> bool:
    """A turn that failed before its first delta: failed, readable error, reservation released, no charge."""
    with transaction.atomic():
        current = Message.objects.select_for_update().filter(pk=message.pk).first()
        if current is None:
            transaction.on_commit(lambda: budget_release(tenant=message.tenant, key=message.usage_key))
            return False
        if current.status != Message.STATUS_STREAMING or current.run_id != run_id:
            return False
        if attempts is not None:
            current.attempts = [a.as_dict() if hasattr(a, "as_dict") else a for a in attempts]
        current.tenant = message.tenant
        _mark_failed(current, error=error)
        return True


def _mark_failed(message: Message, *, error: str) -> None:
    """Call inside a transaction holding the message row."""
    message.status = Message.STATUS_FAILED
    message.error = error
    message.finished_at = timezone.now()
    message.save(update_fields=["status", "error", "finished_at", "attempts"])
    tenant, key, message_id = message.tenant, message.usage_key, message.pk
    transaction.on_commit(lambda: _after_unbilled_end(tenant=tenant, key=key, message_id=message_id,
                                                     status=Message.STATUS_FAILED))


def _after_unbilled_end(*, tenant: Tenant, key: str, message_id: int, status: str) -> None:
    budget_release(tenant=tenant, key=key)
    streams.stream_end(message_id, status)


def _apply_result(message: Message, result: RouteResult) -> None:
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
        message.latency_ms = round((timezone.now() - message.started_at).total_seconds() * 1000)


def _record_usage(*, message: Message, result: RouteResult):
    """The one usage row of a turn, key `chat:<id>`. Call inside the turn's final transaction."""
    if not result.endpoint or result.prices is None:
        return None
    return usage_record(tenant=message.tenant, source="chat", key=message.usage_key,
                        user_id=message.conversation.owner_id, api_key_id=None, **usage_row(result))


# --- the heartbeat sweeper ---


def turn_sweep_stale() -> dict:
    """End or requeue turns whose worker died (no heartbeat). Run by Celery beat every ~30 s; crosses tenants.

    - streaming, deltas already published → failed with the partial text, its tokens billed (estimated) under
      the turn's usage key, so a late finish by a zombie worker cannot bill again;
    - streaming, nothing published yet → queued again and re-enqueued (failed after CHAT_MAX_RUNS runs);
    - queued and unclaimed for CHAT_QUEUED_RESCUE_AFTER → enqueued again (the task was lost with its worker;
      a duplicate is harmless, only a queued message can be claimed).
    """
    from datetime import timedelta

    from .selectors import turns_unfinished_all_tenants

    now = timezone.now()
    counts = {"failed": 0, "requeued": 0, "rescued": 0}
    stale = turns_unfinished_all_tenants().filter(
        status=Message.STATUS_STREAMING, started_at__lt=now - timedelta(seconds=settings.CHAT_HEARTBEAT_TTL)
    )
    for message in stale:
        if streams.heartbeat_alive(message.pk):
            continue
        text, deltas = streams.stream_text(message.pk)
        if deltas:
            counts["failed"] += turn_fail_partial(message=message, text=text)
        else:
            counts["requeued"] += turn_requeue(message=message)
    waiting = turns_unfinished_all_tenants().filter(
        status=Message.STATUS_QUEUED, created_at__lt=now - timedelta(seconds=settings.CHAT_QUEUED_RESCUE_AFTER)
    )
    for message in waiting:
        if streams.rescue_claim(message.pk, settings.CHAT_QUEUED_RESCUE_AFTER) and _reserve_again(message):
            _enqueue(message.pk)
            counts["rescued"] += 1
    return counts


def _reserve_again(message: Message) -> bool:
    """Before a waiting turn is enqueued again: hold its budget again (the same key replaces the hold, which
    also covers a send whose process died between its insert and its hold). A refused hold fails the turn,
    unbilled, with the reason."""
    try:
        _hold_budget(message=message, request=turn_request(message=message))
    except ChatRefused as exc:
        _end_queued(message=message, status=Message.STATUS_FAILED, error=str(exc))
        return False
    return True


def turn_fail_partial(*, message: Message, text: str) -> bool:
    """A turn whose worker died after publishing deltas: failed, partial text kept, estimated tokens billed."""
    with transaction.atomic():
        current = Message.objects.select_for_update().filter(pk=message.pk).first()
        if current is None or current.status != Message.STATUS_STREAMING or current.run_id != message.run_id:
            return False
        result = _estimated_result(message=message, text=text)
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

        transaction.on_commit(after)
        return True


def turn_requeue(*, message: Message) -> bool:
    """A claimed turn whose worker died before any delta: back to the queue (nothing was spent)."""
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
        transaction.on_commit(lambda: _enqueue(current.pk))
        return True


def _estimated_result(*, message: Message, text: str) -> RouteResult:
    """What a dead worker's partial answer cost, estimated: the prompt and the published text counted with
    routing's token estimate, priced at the tier's first endpoint (which endpoint answered died with the
    worker; the first is the one that answers unless a fallback happened)."""
    from routing.cost import estimate_tokens, price_usage
    from routing.types import Usage

    endpoint, prices = _primary_endpoint(message.tier)
    prompt = "\n".join(m.content for m in message_history(message=message))
    usage = Usage(input_tokens=estimate_tokens(prompt), output_tokens=estimate_tokens(text), output_estimated=True)
    return RouteResult(
        text=text, finish_reason="error", tier=message.tier, requested_tier=message.tier,
        endpoint=endpoint.slug if endpoint else "",
        provider=endpoint.provider if endpoint else "", upstream_model=endpoint.upstream_model if endpoint else "",
        usage=usage, reason="Ended by the heartbeat sweeper: the worker stopped mid-answer.",
        cost=price_usage(prices=prices, usage=usage) if prices else Decimal("0"), prices=prices,
        error="The worker answering this message stopped.",
    )


def _primary_endpoint(tier: str):
    """The first enabled endpoint of the tier's chain and its prices, from routing's catalog snapshot."""
    from routing.catalog import catalog_get

    catalog = catalog_get()
    for slug in catalog.chains.get(tier, ()):
        endpoint = catalog.endpoints.get(slug)
        if endpoint is not None and endpoint.enabled:
            return endpoint, endpoint.prices
    return None, None
