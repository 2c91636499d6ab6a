"""The chat's hand-written SQL, all in one place: the send, the claim, and the history both of them read.

- The send (`insert_turn`): one statement inserts the question (when new) and the queued answer, moves the
  conversation to the top of the sidebar and reads the history the answer is asked with.
- The claim (`claim`): one statement takes a queued turn for one run and returns its tenant, the plan and the
  history.

Why plain SQL: both sit between the user pressing Enter and the first word, where the ORM's round trips and CPU
were most of the chat's overhead (bench/chat_latency.py; bench/README.md, "Chat"). Keep them one statement each.

How the SQL keeps up with the models: every table and column name comes from the models' fields, never from a
literal, and the INSERT's values come from Django's own preparation of each field (`pre_save`,
`get_db_prep_save`: defaults, auto_now_add, JSON). `tests/chat/test_sql.py` holds both statements to what the
ORM would send and load, and fails for a field change they would not follow (a database default, a generated
column, a field whose values need a converter on the way out of the database).
"""

import functools
import uuid

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from routing.types import ChatMessage
from tenants.models import Plan, Tenant

from .models import ONE_RUNNING_TURN, ChatSettings, Conversation, Message

# The Message fields the claim returns (the runner reads no other; the rest stay deferred), and the Conversation's.
MESSAGE_CLAIMED = ("id", "tenant_id", "conversation_id", "role", "status", "parent_id", "tier", "run_id",
                   "run_count", "started_at")
CONVERSATION_CLAIMED = ("id", "tenant_id", "owner_id", "tier", "instructions")


def column(model, name: str) -> str:
    """The quoted column of a model field, by name or attname (get_field takes an FK's attname too)."""
    return connection.ops.quote_name(model._meta.get_field(name).column)


def columns(alias: str, model, attnames=None) -> str:
    """`alias.column, ...` for the given fields of `model`, all its concrete fields by default."""
    fields = model._meta.concrete_fields
    if attnames is not None:
        fields = [model._meta.get_field(name) for name in attnames]
    return ", ".join(f"{alias}.{connection.ops.quote_name(f.column)}" for f in fields)


def attnames(model) -> list[str]:
    return [f.attname for f in model._meta.concrete_fields]


# --- the history ---


def slot_of(alias: str) -> str:
    """The turn (slot) of a question row as SQL: its first version's id (`version_of`), or its own."""
    return f"COALESCE({alias}.{column(Message, 'version_of_id')}, {alias}.{column(Message, 'id')})"


@functools.cache
def history_sql(*, conversation: str, tenant: str, slot: str, question: str | None = None) -> str:
    """The rows the model may see for an answer in turn `slot`, as SQL (the arguments are SQL expressions: a
    placeholder, a column or a subquery): for each earlier turn of the conversation the version on screen (the
    answer its first question selected, else the latest), then, with `question`, that question's row. Columns
    (slot, question text, answer text, answer status); order by slot. Shared by `selectors.message_history`, the
    send and the claim, which read them in the statement that writes."""
    def m(name: str) -> str:
        return column(Message, name)

    table = Message._meta.db_table
    rows = (
        f"SELECT DISTINCT ON ({slot_of('hq')}) {slot_of('hq')} AS slot, hq.{m('content')} AS q_content, "
        f"ha.{m('content')} AS a_content, ha.{m('status')} AS a_status "
        f"FROM {table} ha JOIN {table} hq ON hq.{m('id')} = ha.{m('parent_id')} "
        f"JOIN {table} hr ON hr.{m('id')} = {slot_of('hq')} "
        f"WHERE ha.{m('conversation_id')} = {conversation} AND ha.{m('tenant_id')} = {tenant} "
        f"AND ha.{m('role')} = '{Message.ROLE_ASSISTANT}' AND {slot_of('hq')} < {slot} "
        f"ORDER BY {slot_of('hq')}, COALESCE(ha.{m('id')} = hr.{m('selected_answer_id')}, false) DESC, ha.{m('id')} DESC"
    )
    if question is None:
        return rows
    return (f"SELECT * FROM ({rows}) earlier UNION ALL SELECT {slot_of('hx')}, hx.{m('content')}, NULL, NULL "
            f"FROM {table} hx WHERE hx.{m('id')} = {question}")


def history_from_rows(rows) -> list[ChatMessage]:
    """What the model sees, from `history_sql` rows in slot order: each question, followed by its answer when
    that finished with text (a failed turn's or an empty answer is left out)."""
    history = []
    for _slot, question, answer, status in rows:
        history.append(ChatMessage(role=Message.ROLE_USER, content=question))
        if answer and answer.strip() and status in (Message.STATUS_DONE, Message.STATUS_CANCELLED):
            history.append(ChatMessage(role=Message.ROLE_ASSISTANT, content=answer))
    return history


def history(*, conversation_id: int, tenant_id: int, question_id: int) -> list[ChatMessage]:
    """The history (`history_from_rows`) of an answer to `question_id`, read alone."""
    table = Message._meta.db_table
    slot = f"(SELECT {slot_of('s')} FROM {table} s WHERE s.{column(Message, 'id')} = %s)"
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM ({history_sql(conversation='%s', tenant='%s', slot=slot, question='%s')}) h "
                       "ORDER BY h.slot", [conversation_id, tenant_id, question_id, question_id])
        return history_from_rows(cursor.fetchall())


def workspace_instructions_sql(tenant: str) -> str:
    """The workspace's default instructions (NULL without a settings row), as a scalar subquery."""
    return (f"(SELECT cs.{column(ChatSettings, 'default_instructions')} FROM {ChatSettings._meta.db_table} cs "
            f"WHERE cs.{column(ChatSettings, 'tenant_id')} = {tenant})")


# --- the send ---


class TurnRunning(Exception):
    """The conversation already has an unfinished answer (the `msg_one_running_turn` index refused the send's
    INSERT): nothing of the statement was written."""


def insert_values(message: Message, *, parent: str | None = None) -> tuple[str, str, list]:
    """(columns, values, params) of the INSERT that `message.save()` would send: Django's own preparation of
    each field (defaults, auto_now_add, JSON). `parent` puts an SQL expression in place of parent_id."""
    columns, values, params = [], [], []
    for field in message._meta.concrete_fields:
        if field.primary_key or field.generated:  # Postgres computes a generated column (search_vector)
            continue
        columns.append(connection.ops.quote_name(field.column))
        value = field.pre_save(message, add=True)
        if field.attname == "parent_id" and parent is not None:
            values.append(parent)
        else:
            values.append("%s")
            params.append(field.get_db_prep_save(value, connection))
    return ", ".join(columns), ", ".join(values), params


def insert_turn(*, conversation: Conversation, question: Message, answer: Message) -> tuple[list[ChatMessage], str]:
    """One statement, its own transaction: INSERT the question (when new) and the answer, UPDATE the
    conversation's title and updated_at (as set on `conversation`), SELECT the history and the workspace's
    default instructions. Sets the new rows' ids; returns (the history the answer is asked with, the workspace
    instructions). Raises TurnRunning when the conversation has an unfinished
    answer: the partial unique index `msg_one_running_turn` decides, so two sends racing make exactly one turn."""
    table, message_id = Message._meta.db_table, column(Message, "id")
    parts, params = [], []
    if question.pk is None:
        names, values, question_params = insert_values(question)
        parts.append(f"q AS (INSERT INTO {table} ({names}) VALUES ({values}) "
                     f"RETURNING {message_id} AS id, {slot_of(table)} AS slot)")
        params += question_params
    else:
        parts.append("q AS (SELECT %s::bigint AS id, %s::bigint AS slot)")
        params += [question.pk, question.version_of_id or question.pk]
    # INSERT ... SELECT FROM q: the question's row (and id) is made before the answer's, so ids keep the order.
    names, values, answer_params = insert_values(answer, parent="q.id")
    parts.append(f"a AS (INSERT INTO {table} ({names}) SELECT {values} FROM q "
                 f"RETURNING {message_id} AS id, {column(Message, 'parent_id')} AS parent_id)")
    params += answer_params
    parts.append(f"c AS (UPDATE {Conversation._meta.db_table} SET {column(Conversation, 'title')} = %s, "
                 f"{column(Conversation, 'updated_at')} = %s WHERE {column(Conversation, 'id')} = %s)")
    params += [conversation.title, conversation.updated_at, conversation.pk]
    history = history_sql(conversation="%s", tenant="%s", slot="q.slot")
    params += [conversation.tenant_id, conversation.pk, conversation.tenant_id]
    sql = (f"WITH {', '.join(parts)} SELECT a.id, a.parent_id, {workspace_instructions_sql('%s')}, h.* "
           f"FROM a CROSS JOIN q "
           f"LEFT JOIN LATERAL ({history}) h ON true ORDER BY h.slot")
    try:
        rows = _execute_insert(sql, params)
    except IntegrityError as exc:
        if getattr(getattr(exc.__cause__, "diag", None), "constraint_name", None) == ONE_RUNNING_TURN:
            raise TurnRunning() from exc
        raise
    answer.pk, question.pk = rows[0][0], rows[0][1]
    answer.parent = question
    for message in (question, answer):
        message._state.adding = False
    # The earlier turns as they are on screen, then the question (which the statement may have just inserted,
    # and so cannot read).
    history = history_from_rows([row[3:] for row in rows if row[3] is not None])
    history.append(ChatMessage(role=Message.ROLE_USER, content=question.content))
    return history, rows[0][2] or ""


def _execute_insert(sql: str, params: list) -> list:
    """Run the send's statement. Outside a transaction it is its own; inside a caller's (a test's), a savepoint
    keeps a refused INSERT from breaking the caller's transaction."""
    with connection.cursor() as cursor:
        if connection.in_atomic_block:
            with transaction.atomic():
                cursor.execute(sql, params)
        else:
            cursor.execute(sql, params)
        return cursor.fetchall()


# --- the claim ---


@functools.cache
def claim_sql() -> str:
    """The claim's statement. Parameters: the new status, the run id, the start time, the message id, the
    assistant role and the queued status."""
    def m(name: str) -> str:
        return column(Message, name)

    message, conversation = Message._meta.db_table, Conversation._meta.db_table
    returned = ", ".join(m(name) for name in MESSAGE_CLAIMED)
    slot = f"(SELECT {slot_of('s')} FROM {message} s WHERE s.{m('id')} = m.{m('parent_id')})"
    history = history_sql(conversation=f"m.{m('conversation_id')}", tenant=f"m.{m('tenant_id')}", slot=slot,
                          question=f"m.{m('parent_id')}")
    return (
        f"WITH claimed AS (UPDATE {message} SET {m('status')} = %s, {m('run_id')} = %s, "
        f"{m('run_count')} = {m('run_count')} + 1, {m('started_at')} = %s "
        f"WHERE {m('id')} = %s AND {m('role')} = %s AND {m('status')} = %s RETURNING {returned}) "
        f"SELECT {columns('m', Message, MESSAGE_CLAIMED)}, {columns('c', Conversation, CONVERSATION_CLAIMED)}, "
        f"{columns('t', Tenant)}, {columns('p', Plan)}, {workspace_instructions_sql('m.' + m('tenant_id'))}, h.* "
        f"FROM claimed m JOIN {conversation} c ON c.{column(Conversation, 'id')} = m.{m('conversation_id')} "
        f"JOIN {Tenant._meta.db_table} t ON t.{column(Tenant, 'id')} = m.{m('tenant_id')} "
        f"JOIN {Plan._meta.db_table} p ON p.{column(Plan, 'id')} = t.{column(Tenant, 'plan_id')} "
        f"LEFT JOIN LATERAL ({history}) h ON true ORDER BY h.slot"
    )


def claim(*, message_id: int, run_id: uuid.UUID) -> tuple[Message, list[ChatMessage], str] | None:
    """Take a queued assistant message for one run: queued → streaming, the run id set, the run counted. Returns
    the message (its conversation, tenant and plan attached), its history and the workspace's default
    instructions, or None when there is nothing to take (gone, not queued, not an answer).

    The UPDATE's WHERE re-checks `queued` on the row it locks, so of two runs racing for the same message
    exactly one wins. The rows hold plain column types (no field needs a database converter), so `from_db`
    builds the instances."""
    with connection.cursor() as cursor:
        cursor.execute(claim_sql(), [Message.STATUS_STREAMING, run_id, timezone.now(), message_id,
                                     Message.ROLE_ASSISTANT, Message.STATUS_QUEUED])
        rows = cursor.fetchall()
    if not rows:
        return None
    widths = [len(MESSAGE_CLAIMED), len(CONVERSATION_CLAIMED), len(attnames(Tenant)), len(attnames(Plan))]
    first, parts, at = rows[0], [], 0
    for width in widths:
        parts.append(first[at:at + width])
        at += width
    db = connection.alias
    message = Message.from_db(db, MESSAGE_CLAIMED, parts[0])
    message.conversation = Conversation.from_db(db, CONVERSATION_CLAIMED, parts[1])
    message.tenant = Tenant.from_db(db, attnames(Tenant), parts[2])
    message.tenant.plan = Plan.from_db(db, attnames(Plan), parts[3])
    workspace, at = first[at] or "", at + 1
    return message, history_from_rows([row[at:] for row in rows if row[at] is not None]), workspace
