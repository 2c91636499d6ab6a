"""Reads for the chat. Every selector takes the tenant and the user: a conversation is private to its owner,
so another member's conversation and another tenant's answer exactly like a missing id."""

from dataclasses import dataclass
from decimal import Decimal

from django.db.models import (
    Case,
    CharField,
    Count,
    F,
    FloatField,
    IntegerField,
    Q,
    QuerySet,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Cast, Coalesce

from routing.types import ChatMessage
from tenants.models import Tenant, User

from . import sql
from .models import (
    FEEDBACK_DOWN,
    FEEDBACK_UP,
    ROUTE_ESCALATED,
    ROUTE_STAYED,
    ROUTE_UNSCORED,
    Conversation,
    Message,
)

SIDEBAR_LIMIT = 100


def conversation_list(*, tenant: Tenant, user: User, search: str = "") -> QuerySet[Conversation]:
    qs = Conversation.objects.filter(tenant=tenant, owner=user)
    search = (search or "").strip()
    if search:
        qs = qs.filter(title__icontains=search)
    return qs.order_by("-updated_at", "-id")


def conversation_get(*, tenant: Tenant, user: User, conversation_id) -> Conversation:
    """Raises Conversation.DoesNotExist for a missing id, another tenant's and another member's alike.

    The row matched the caller's tenant and user, so those very objects (the tenant with its plan, as the
    middleware loaded it) are attached instead of joined and loaded again."""
    conversation = conversation_list(tenant=tenant, user=user).get(pk=conversation_id)
    conversation.tenant, conversation.owner = tenant, user
    return conversation


def conversation_cost(*, tenant: Tenant, user: User, conversation: Conversation) -> Decimal:
    """The conversation's running cost: the billed amount of its answers (what the tenant pays)."""
    total = message_list(tenant=tenant, user=user, conversation=conversation).aggregate(
        total=Coalesce(Sum("billed"), Decimal("0"))
    )["total"]
    return total


def message_list(*, tenant: Tenant, user: User, conversation: Conversation) -> QuerySet[Message]:
    """Messages in reading order: turn by turn (a turn's slot is its first question's id), each turn's
    questions and answers (all versions) by id."""
    return (
        Message.objects.filter(tenant=tenant, conversation__owner=user, conversation=conversation)
        .annotate(thread=Coalesce("version_of_id", "parent__version_of_id", "parent_id", "id"))
        .order_by("thread", "id")
    )


@dataclass
class Turn:
    """One turn as the page shows it: the version on screen (a question and its answer) of all the turn's
    versions (its answers, oldest first)."""

    slot: int
    question: Message
    answer: Message | None
    versions: list[Message]

    @property
    def index(self) -> int:
        return self.versions.index(self.answer) + 1 if self.answer in self.versions else 0

    @property
    def count(self) -> int:
        return len(self.versions)

    @property
    def previous(self) -> Message | None:
        return self.versions[self.index - 2] if self.index > 1 else None

    @property
    def next(self) -> Message | None:
        return self.versions[self.index] if 0 < self.index < self.count else None


def turns_from(messages) -> list[Turn]:
    """Group a conversation's messages (`message_list`) into turns, each showing its selected version."""
    by_id = {m.pk: m for m in messages}
    questions: dict[int, list[Message]] = {}
    answers: dict[int, list[Message]] = {}
    for m in messages:
        if m.role == Message.ROLE_USER:
            questions.setdefault(m.slot_id, []).append(m)
        elif m.parent_id in by_id:
            answers.setdefault(by_id[m.parent_id].slot_id, []).append(m)
    turns = []
    for slot in sorted(questions):
        versions = answers.get(slot, [])
        root = by_id.get(slot) or questions[slot][0]
        shown = next((a for a in versions if a.pk == root.selected_answer_id), versions[-1] if versions else None)
        question = by_id[shown.parent_id] if shown is not None else questions[slot][-1]
        turns.append(Turn(slot=slot, question=question, answer=shown, versions=versions))
    return turns


def conversation_turns(*, tenant: Tenant, user: User, conversation: Conversation) -> list[Turn]:
    return turns_from(list(message_list(tenant=tenant, user=user, conversation=conversation)))


def turn_get(*, tenant: Tenant, user: User, message: Message) -> Turn:
    """The turn a message (a question or an answer) belongs to, showing its selected version."""
    question = message if message.role == Message.ROLE_USER else message.parent
    slot = question.slot_id
    rows = list(message_list(tenant=tenant, user=user, conversation=message.conversation).filter(thread=slot))
    return turns_from(rows)[0]


def message_get(*, tenant: Tenant, user: User, message_id, conversation_id=None) -> Message:
    """Raises Message.DoesNotExist for a missing id, another tenant's and another member's alike."""
    qs = Message.objects.filter(tenant=tenant, conversation__owner=user, conversation__tenant=tenant)
    if conversation_id is not None:
        qs = qs.filter(conversation_id=conversation_id)
    return qs.select_related("conversation", "tenant__plan").get(pk=message_id)


def message_history(*, message: Message) -> list[ChatMessage]:
    """What the model sees for an assistant message: the conversation up to and including its question.

    Internal to the chat's services, which already hold a message loaded through a tenant-scoped path. Plain
    SQL (`sql.history`): it runs between the user pressing Enter and the first word (conversations/sql.py)."""
    return sql.history(conversation_id=message.conversation_id, tenant_id=message.tenant_id,
                       question_id=message.parent_id)


def turns_unfinished_all_tenants() -> QuerySet[Message]:
    """For the heartbeat sweeper (crosses tenants by design): assistant turns not yet finished."""
    return Message.objects.filter(
        role=Message.ROLE_ASSISTANT, status__in=[Message.STATUS_QUEUED, Message.STATUS_STREAMING]
    ).select_related("tenant__plan", "conversation")


# --- answer feedback, for staff (crosses tenants by design) ---


def _rated_answers_all_tenants() -> QuerySet[Message]:
    # Served by the partial index `msg_rated`: only rated answers are read, however long the table grows.
    return Message.objects.filter(role=Message.ROLE_ASSISTANT, feedback__isnull=False)


def _satisfaction(grouped: QuerySet) -> QuerySet:
    """Per group of a `.values(...)` queryset: up, down, rated (answers with a rating) and share_up (0..1)."""
    return grouped.annotate(
        up=Count("pk", filter=Q(feedback=FEEDBACK_UP)),
        down=Count("pk", filter=Q(feedback=FEEDBACK_DOWN)),
        rated=Count("pk"),
    ).annotate(share_up=Cast(F("up"), FloatField()) / F("rated"))


# The decision as `Message.route_decision` names it, in SQL: a turn is scored when it has both a score and a verdict.
_ROUTE_DECISION = Case(
    When(route_score__isnull=False, route_escalated=True, then=Value(ROUTE_ESCALATED)),
    When(route_score__isnull=False, route_escalated=False, then=Value(ROUTE_STAYED)),
    default=Value(ROUTE_UNSCORED),
    output_field=CharField(),
)
_ROUTE_DECISION_ORDER = Case(
    When(decision=ROUTE_ESCALATED, then=Value(0)),
    When(decision=ROUTE_STAYED, then=Value(1)),
    default=Value(2),
    output_field=IntegerField(),
)


def feedback_by_endpoint_all_tenants() -> QuerySet:
    """Satisfaction per endpoint that answered, all tenants: dicts of endpoint, up, down, rated, share_up; the
    most rated first. One GROUP BY."""
    return _satisfaction(_rated_answers_all_tenants().values("endpoint")).order_by("-rated", "endpoint")


def feedback_by_decision_all_tenants() -> QuerySet:
    """Satisfaction per smart Auto decision (escalated, stayed, unscored), all tenants: dicts of decision, up,
    down, rated, share_up, in that order of decisions; a decision nobody has rated is absent. One GROUP BY."""
    grouped = _rated_answers_all_tenants().annotate(decision=_ROUTE_DECISION).values("decision")
    return _satisfaction(grouped).order_by(_ROUTE_DECISION_ORDER)
