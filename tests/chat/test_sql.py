"""The chat's hand-written SQL (conversations.sql) held to what the ORM would send and load.

The send's INSERT and the claim are plain SQL built from the models' fields. These tests fail when a field of
Message (or of the Tenant and Plan the claim loads whole) changes in a way that SQL does not follow; the
`*_would_catch_*` tests make such a change on a copy of the models, as the migrations render them, and show the
same checks report it.
"""

import uuid
from datetime import UTC, datetime

import pytest
from django.apps import apps as global_apps
from django.db import connection, models
from django.db.migrations.state import ProjectState
from django.db.models.functions import Length
from django.db.models.sql import InsertQuery
from django.utils import timezone

from conversations import services, sql
from conversations.models import Conversation, Message
from tenants.models import Plan, Tenant

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 14, 12, 0, tzinfo=UTC)


@pytest.fixture
def frozen_now(monkeypatch):
    """auto_now_add stamps each preparation with the time: the ORM's and ours must see the same."""
    monkeypatch.setattr(timezone, "now", lambda: NOW)


def _comparable(value):
    # psycopg's JSON wrappers (what a JSONField prepares) compare by identity: compare what they wrap.
    return (type(value).__name__, value.obj) if hasattr(value, "obj") else value


def insert_drift(message) -> list[str]:
    """Where `sql.insert_values(message)` differs from the INSERT `message.save()` would send for a new row
    (the fields Model._save_table inserts, prepared by Django's insert compiler); [] when they agree."""
    meta = message._meta
    fields = [f for f in meta.local_concrete_fields if not f.generated and f is not meta.auto_field]
    query = InsertQuery(type(message))
    query.insert_values(fields, [message])
    [(orm_sql, orm_params)] = query.get_compiler(connection=connection).as_sql()
    try:
        names, values, params = sql.insert_values(message)
    except Exception as exc:  # noqa: BLE001 - a field our preparation cannot handle is drift too
        return [f"insert_values raised {exc!r}"]
    ours = f"INSERT INTO {connection.ops.quote_name(meta.db_table)} ({names}) VALUES ({values})"
    drift = []
    if ours != orm_sql:
        drift.append(f"statement: {ours!r} != {orm_sql!r}")
    if [_comparable(p) for p in params] != [_comparable(p) for p in orm_params]:
        drift.append(f"params: {params!r} != {list(orm_params)!r}")
    return drift


def claim_drift(*, message_model=Message, conversation_model=Conversation, tenant_model=Tenant,
                plan_model=Plan) -> list[str]:
    """Fields the claim loads that `from_db` would get wrong: the claim hands it raw column values, so a field
    whose values need a converter on the way out of the database (JSON, a custom field) is drift, and so is a
    claimed field the model no longer has."""
    loaded = [(message_model, sql.MESSAGE_CLAIMED), (conversation_model, sql.CONVERSATION_CLAIMED),
              (tenant_model, sql.attnames(tenant_model)), (plan_model, sql.attnames(plan_model))]
    drift = []
    for model, names in loaded:
        by_attname = {f.attname: f for f in model._meta.concrete_fields}
        for name in names:
            field = by_attname.get(name)
            if field is None:
                drift.append(f"{model.__name__}.{name}: no such field")
            elif field.get_db_converters(connection) + connection.ops.get_db_converters(field.cached_col):
                drift.append(f"{model.__name__}.{name}: needs a converter the claim does not apply")
    return drift


def models_with(changes) -> dict:
    """A copy of the project's models as the migrations render them, changed by `changes(state)`."""
    state = ProjectState.from_apps(global_apps)
    changes(state)
    get = state.apps.get_model
    return {"message_model": get("conversations", "Message"), "conversation_model": get("conversations",
                                                                                         "Conversation"),
            "tenant_model": get("tenants", "Tenant"), "plan_model": get("tenants", "Plan")}


def _question(model, conversation):
    return model(tenant_id=conversation.tenant_id, conversation_id=conversation.pk, role="user",
                 content="What is a kiwi?", status="done")


# --- the send's INSERT ---


def test_insert_sends_what_the_orm_would_for_a_question_and_an_answer(alice_chat, frozen_now):
    question = _question(Message, alice_chat)
    assert insert_drift(question) == []
    question.save()
    answer = Message(tenant=alice_chat.tenant, conversation=alice_chat, role="assistant", status="queued",
                     tier="auto", parent=question, retry_of=None)
    assert insert_drift(answer) == []


def test_insert_follows_a_new_plain_field(alice_chat, frozen_now):
    copy = models_with(lambda state: state.add_field(
        "conversations", "message", "probe", models.CharField(max_length=20, default="x"), True))
    question = _question(copy["message_model"], alice_chat)
    assert insert_drift(question) == []
    assert '"probe"' in sql.insert_values(question)[0]


def test_insert_follows_a_new_generated_column(alice_chat, frozen_now):
    # Postgres computes a generated column (as Message.search_vector): the INSERT leaves it out, as the ORM does.
    field = models.GeneratedField(expression=Length("content"), output_field=models.IntegerField(), db_persist=True)
    copy = models_with(lambda state: state.add_field("conversations", "message", "probe", field, True))
    question = _question(copy["message_model"], alice_chat)
    assert insert_drift(question) == []
    assert '"probe"' not in sql.insert_values(question)[0]


def test_insert_check_would_catch_a_field_the_sql_does_not_follow(alice_chat, frozen_now):
    field = models.IntegerField(db_default=7)
    copy = models_with(lambda state: state.add_field("conversations", "message", "probe", field, True))
    assert insert_drift(_question(copy["message_model"], alice_chat)) != []


# --- the claim ---


def test_claim_loads_what_the_orm_loads(alice_chat, chat_redis):
    answer = services.message_send(conversation=alice_chat, author=alice_chat.owner, text="What is a kiwi?")
    message, history, _workspace = sql.claim(message_id=answer.pk, run_id=uuid.uuid4())
    row = Message.objects.select_related("conversation", "tenant__plan").get(pk=answer.pk)

    def same(loaded, orm, attnames):
        for name in attnames:
            mine, theirs = getattr(loaded, name), getattr(orm, name)
            assert (type(mine), mine) == (type(theirs), theirs), f"{type(orm).__name__}.{name}"

    same(message, row, sql.MESSAGE_CLAIMED)
    same(message.conversation, row.conversation, sql.CONVERSATION_CLAIMED)
    same(message.tenant, row.tenant, sql.attnames(Tenant))
    same(message.tenant.plan, row.tenant.plan, sql.attnames(Plan))
    assert message.get_deferred_fields() == set(sql.attnames(Message)) - set(sql.MESSAGE_CLAIMED)
    assert [(m.role, m.content) for m in history] == [("user", "What is a kiwi?")]


def test_claim_sql_names_every_column_it_loads():
    statement = sql.claim_sql()
    for alias, model, names in (("m", Message, sql.MESSAGE_CLAIMED), ("c", Conversation, sql.CONVERSATION_CLAIMED),
                                ("t", Tenant, sql.attnames(Tenant)), ("p", Plan, sql.attnames(Plan))):
        for name in names:
            assert f"{alias}.{sql.column(model, name)}" in statement, f"{model.__name__}.{name}"


def test_claim_loads_only_fields_it_can_build_without_converters():
    assert claim_drift() == []


def test_claim_check_would_catch_a_field_it_cannot_load():
    def json_tier(state):
        state.alter_field("conversations", "message", "tier", models.JSONField(default=dict), True)

    def tenant_json(state):
        state.add_field("tenants", "tenant", "probe", models.JSONField(default=dict), True)

    def renamed(state):
        state.rename_field("conversations", "message", "run_count", "runs")

    assert claim_drift(**models_with(json_tier)) == ["Message.tier: needs a converter the claim does not apply"]
    assert claim_drift(**models_with(tenant_json)) == ["Tenant.probe: needs a converter the claim does not apply"]
    assert claim_drift(**models_with(renamed)) == ["Message.run_count: no such field"]
