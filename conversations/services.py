"""What people do in the chat: create, rename, delete, switch tier, send, retry, edit, pick a version, stop. One function per use
case, keyword-only, called by the views and the REST API.

Refusals raise `ChatRefused` with a message for people and change nothing. A send or a retry inserts the turn
(`sql.insert_turn`), holds its budget (`routing.metering`, the path the proxy's calls take too) and enqueues it;
what happens to the turn after that is `conversations.lifecycle`'s, and a dead worker's turn the sweeper's
(`conversations.sweeper`).
"""

import redis
from django.db import transaction
from django.utils import timezone

from routing import metering
from tenants.models import TIER_AUTO, TIER_MAX, Tenant, User

from . import sql, streams
from .lifecycle import enqueue, turn_end_queued, turn_request
from .models import DEFAULT_TITLE, Conversation, Message

MAX_MESSAGE_CHARS = 32_000
MAX_TITLE_CHARS = 200
TIER_NAMES = {TIER_AUTO: "Auto", TIER_MAX: "MAX"}


class ChatRefused(Exception):
    """A refused action. `str(exc)` is fit to show people; nothing was saved."""


class TurnInProgress(ChatRefused):
    """A turn asked for while the conversation's answer is still being written (one answer at a time): the web
    and the REST API answer it with 409."""

    def __init__(self, message: str = "Wait for the answer to finish, or stop it, before sending another message."):
        super().__init__(message)


# --- conversations ---


def conversation_create(*, tenant: Tenant, owner: User, tier: str = TIER_AUTO, title: str = "") -> Conversation:
    tier = _valid_tier(tier)
    if not tenant.plan.allows_tier(tier):
        tier = TIER_AUTO  # a new conversation starts on what the plan allows
    title = (title or "").strip()[:MAX_TITLE_CHARS] or DEFAULT_TITLE
    return Conversation.objects.create(tenant=tenant, owner=owner, tier=tier, title=title)


def conversation_start(*, tenant: Tenant, owner: User, text: str, tier: str = TIER_AUTO) -> Message:
    """Create a conversation with its first message and start the turn: there are no empty chats. Returns the
    queued answer. Refuses (ChatRefused) as `message_send` does, and then leaves no conversation behind."""
    tier = _valid_tier(tier)
    text = _clean_text(text)
    _check_can_run(tenant=tenant, tier=tier)
    conversation = Conversation.objects.create(tenant=tenant, owner=owner, tier=tier, title=DEFAULT_TITLE)
    try:
        return message_send(conversation=conversation, author=owner, text=text)
    except ChatRefused:
        conversation.delete()
        raise


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
        metering.release(tenant=conversation.tenant, key=f"chat:{message_id}")


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
    """Answer the same question again: a new version of the answer in the same turn (a new usage key, so each
    version is billed once); the earlier versions are kept, and the new one is shown. Runs on the
    conversation's current tier."""
    if message.role != Message.ROLE_ASSISTANT or message.parent_id is None:
        raise ChatRefused("Only an answer can be retried.")
    if not message.is_finished:
        raise TurnInProgress("This answer is still being generated; stop it before you retry.")
    conversation = message.conversation
    _check_can_run(tenant=conversation.tenant, tier=conversation.tier)
    answer = _turn_start(conversation=conversation, question=message.parent, retry_of=message, title=None)
    _show_latest(slot_id=message.parent.slot_id)
    return answer


def message_edit(*, question: Message, author: User, text: str) -> Message:
    """Ask an edited question in the same turn: a new version of the question with its own answer (the earlier
    versions are kept, and the new one is shown). Returns the queued answer."""
    if question.role != Message.ROLE_USER:
        raise ChatRefused("Only your own message can be edited.")
    text = _clean_text(text)
    conversation = question.conversation
    _check_can_run(tenant=conversation.tenant, tier=conversation.tier)
    edited = Message(tenant=conversation.tenant, conversation=conversation, role=Message.ROLE_USER, content=text,
                     status=Message.STATUS_DONE, version_of_id=question.slot_id)
    answer = _turn_start(conversation=conversation, question=edited, retry_of=None, title=None)
    _show_latest(slot_id=question.slot_id)
    return answer


def version_select(*, answer: Message) -> Message:
    """Show `answer` (a version of its turn) in place of the others; later turns' history follows it."""
    if answer.role != Message.ROLE_ASSISTANT or answer.parent_id is None:
        raise ChatRefused("Only an answer has versions.")
    slot_id = answer.parent.slot_id
    Message.objects.filter(pk=slot_id, conversation_id=answer.conversation_id).update(selected_answer=answer)
    return answer


def _show_latest(*, slot_id: int) -> None:
    # The turn shows its latest version again (the one just started).
    Message.objects.filter(pk=slot_id).update(selected_answer=None)


def message_stop(*, message: Message) -> Message:
    """Stop a turn. A running turn sees the flag before its next delta (and publishes no delta after it); the
    worker then stores the partial answer and bills it. A turn still queued is cancelled here, unbilled."""
    if message.role != Message.ROLE_ASSISTANT:
        raise ChatRefused("Only an answer can be stopped.")
    if message.is_finished:
        return message
    streams.stop_flag_set(message.pk)
    turn_end_queued(message=message, status=Message.STATUS_CANCELLED, error="Stopped before it started.")
    message.refresh_from_db()
    return message


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
    Enter and the first word, so it is one round trip (conversations/sql.py says why). The
    hold is keyed by the answer's id, so it comes right after; a refused hold deletes the rows again and puts
    the conversation back, so a refused send leaves nothing. (Should the process die in between, the queued
    answer is found by the heartbeat sweeper, which reserves again before it enqueues.) Call it outside a
    transaction: a caller's rollback would leave the hold in place until it expires.
    """
    tenant = conversation.tenant
    answer = Message(tenant=tenant, conversation=conversation, role=Message.ROLE_ASSISTANT,
                     status=Message.STATUS_QUEUED, tier=conversation.tier, parent=question, retry_of=retry_of)
    before, new_question = (conversation.title, conversation.updated_at), question.pk is None
    conversation.updated_at = timezone.now()
    conversation.title = title or conversation.title
    try:
        history, workspace = sql.insert_turn(conversation=conversation, question=question, answer=answer)
    except sql.TurnRunning:
        conversation.title, conversation.updated_at = before
        raise TurnInProgress() from None
    try:
        metering.hold(tenant=tenant, key=answer.usage_key, tier=answer.tier, user_id=conversation.owner_id,
                      request=turn_request(message=answer, history=history, workspace_instructions=workspace))
    except (*metering.HOLD_REFUSALS, redis.RedisError) as exc:
        Message.objects.filter(pk__in=[answer.pk, question.pk] if new_question else [answer.pk]).delete()
        Conversation.objects.filter(pk=conversation.pk).update(title=before[0], updated_at=before[1])
        conversation.title, conversation.updated_at = before
        if isinstance(exc, redis.RedisError):  # the budget cannot be checked: nothing is sent, nothing is kept
            raise ChatRefused("The chat is unavailable for a moment, so your message was not sent. "
                              "Try again in a few seconds.") from exc
        raise ChatRefused(str(exc)) from exc
    transaction.on_commit(lambda: enqueue(answer.pk))  # at once, unless a caller's transaction is open
    return answer
