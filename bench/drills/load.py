"""The load side of the fault drills: the people, keys and conversations a drill uses (`Fixture`,
`make_fixture`), the calls it makes (`api_call`, `chat_turn`, `page`), steady load (`Load`), waiting for the stack
to answer again (`wait_back`, `wait_turns_finished`) and the figures (`tally`, `print_figures`).

Counts are read from the drill's database with plain psycopg, not through the code under test. Drills import
these through `common`.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from dataclasses import dataclass, field

import httpx
import psycopg
from stack import Stack

# --- people, keys, conversations --------------------------------------------------------------------------------


@dataclass
class Fixture:
    tenant_id: int
    user_id: int
    api_key: str
    session_key: str
    csrf: str = "drillcsrf0123456789abcdef0123456"
    conversations: list[int] = field(default_factory=list)
    _next: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def next_conversation(self) -> int:
        with self._lock:
            cid = self.conversations[self._next % len(self.conversations)]
            self._next += 1
            return cid

    def cookies(self) -> dict[str, str]:
        return {"sessionid": self.session_key, "csrftoken": self.csrf}

    def chat_headers(self) -> dict[str, str]:
        return {"X-CSRFToken": self.csrf, "HX-Request": "true"}


def django_setup(stack: Stack) -> None:
    """Django in the drill's own process, on the drill's database (for the fixture and the tally)."""
    global _database_url
    _database_url = stack.backing.database_url
    for name in ("DATABASE_URL", "REDIS_URL", "DJANGO_SECRET_KEY", "DJANGO_SETTINGS_MODULE", "DJANGO_DEBUG"):
        os.environ[name] = stack.env[name]
    import django

    django.setup()


def make_fixture(stack: Stack, *, conversations: int = 2000, tier: str = "auto") -> Fixture:
    """One tenant on the Enterprise plan, its admin with a session and an API key, and `conversations` empty
    conversations (one per chat turn: a conversation answers one turn at a time)."""
    django_setup(stack)
    from django.contrib.sessions.backends.cached_db import SessionStore

    from conversations.models import Conversation
    from tenants.models import Membership, Plan, Tenant, User
    from tenants.services import api_key_create

    plan = Plan.objects.get(slug="enterprise")
    tenant = Tenant.objects.create(slug="drill", name="Drill", plan=plan)
    user = User.objects.create_user(email="drill@kiwiclaw.test", password="drill-password-0123")
    Membership.objects.create(user=user, tenant=tenant, role="admin")
    _key, secret = api_key_create(tenant=tenant, name="drill", created_by=user)
    session = SessionStore()
    session["_auth_user_id"] = str(user.pk)
    session["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
    session["_auth_user_hash"] = user.get_session_auth_hash()
    session["tenant_id"] = tenant.pk
    session.create()
    convs = Conversation.objects.bulk_create(
        [Conversation(tenant=tenant, owner=user, tier=tier, title=f"drill {i}") for i in range(conversations)])
    from django.db import connection

    connection.close()
    return Fixture(tenant_id=tenant.pk, user_id=user.pk, api_key=secret, session_key=session.session_key,
                   conversations=[c.pk for c in convs])


# --- load -------------------------------------------------------------------------------------------------------

ASSISTANT = re.compile(r'id="msg-(\d+)" class="msg msg-assistant"')


def api_call(client: httpx.Client, fixture: Fixture, *, stream: bool, timeout: float = 30.0) -> tuple[str, str]:
    """One /v1/chat/completions call. Returns (outcome, request id): outcome "ok" for a complete answer (JSON
    with usage, or a stream ending in [DONE]), else "http <status>" or the exception's name."""
    body = {"model": "auto", "stream": stream, "messages": [{"role": "user", "content": "drill: tell me a story"}]}
    headers = {"Authorization": f"Bearer {fixture.api_key}"}
    try:
        if stream:
            with client.stream("POST", "/v1/chat/completions", json=body, headers=headers, timeout=timeout) as r:
                rid = r.headers.get("x-request-id", "")
                text = "".join(r.iter_text())
                if r.status_code != 200:
                    return f"http {r.status_code}", rid
                return ("ok" if "data: [DONE]" in text else "cut short"), rid
        r = client.post("/v1/chat/completions", json=body, headers=headers, timeout=timeout)
        rid = r.headers.get("x-request-id", "")
        if r.status_code != 200:
            return f"http {r.status_code}", rid
        return ("ok" if r.json().get("usage") else "no usage"), rid
    except httpx.HTTPError as exc:
        return type(exc).__name__, ""


def chat_turn(client: httpx.Client, fixture: Fixture, conversation_id: int, *, timeout: float = 30.0
              ) -> tuple[str, int | None]:
    """POST one chat message as the browser's HTMX form does. Returns (outcome, assistant message id)."""
    try:
        r = client.post(f"/chat/{conversation_id}/messages/", data={"text": "drill: tell me a story"},
                        headers=fixture.chat_headers(), cookies=fixture.cookies(), timeout=timeout)
    except httpx.HTTPError as exc:
        return type(exc).__name__, None
    if r.status_code != 200:
        return f"http {r.status_code}", None
    match = ASSISTANT.search(r.text)
    return ("ok", int(match[1])) if match else ("no message", None)


def page(client: httpx.Client, fixture: Fixture, path: str = "/chat/", timeout: float = 10.0) -> str:
    try:
        r = client.get(path, cookies=fixture.cookies(), timeout=timeout)
    except httpx.HTTPError as exc:
        return type(exc).__name__
    return "ok" if r.status_code == 200 else f"http {r.status_code}"


@dataclass
class Outcome:
    at: float  # monotonic
    kind: str  # "api", "api-stream", "chat", "page"
    outcome: str
    ident: str | int | None


class Load:
    """Chat turns and /v1 calls from threads, each sending its next request as soon as the last one ended (chat
    clients pace themselves: one turn every `chat_interval` seconds, on a fresh conversation)."""

    def __init__(self, web_url: str, fixture: Fixture, *, api_clients: int = 4, chat_clients: int = 4,
                 chat_interval: float = 1.0):
        self.web_url = web_url
        self.fixture = fixture
        self.api_clients = api_clients
        self.chat_clients = chat_clients
        self.chat_interval = chat_interval
        self.outcomes: list[Outcome] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def _record(self, kind, outcome, ident):
        with self._lock:
            self.outcomes.append(Outcome(time.monotonic(), kind, outcome, ident))

    def _api(self, i: int):
        with httpx.Client(base_url=self.web_url) as client:
            n = 0
            while not self._stop.is_set():
                stream = n % 2 == 1
                outcome, rid = api_call(client, self.fixture, stream=stream)
                self._record("api-stream" if stream else "api", outcome, rid)
                n += 1
                if outcome != "ok":
                    self._stop.wait(0.1)

    def _chat(self, i: int):
        with httpx.Client(base_url=self.web_url) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                outcome, mid = chat_turn(client, self.fixture, self.fixture.next_conversation())
                self._record("chat", outcome, mid)
                self._stop.wait(max(0.0, self.chat_interval - (time.monotonic() - started)))

    def start(self) -> Load:
        for i in range(self.api_clients):
            self._threads.append(threading.Thread(target=self._api, args=(i,), daemon=True))
        for i in range(self.chat_clients):
            self._threads.append(threading.Thread(target=self._chat, args=(i,), daemon=True))
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=60)

    def since(self, t: float) -> list[Outcome]:
        with self._lock:
            return [o for o in self.outcomes if o.at >= t]


def wait_back(web_url: str, fixture: Fixture, since: float, timeout: float = 120.0,
              turn_timeout: float = 60.0) -> dict[str, float | None]:
    """Seconds from `since` (a monotonic time: the server came back) until each of a page, a /v1 call and a
    chat turn first succeeds (a turn: posted, then done). None for one that never did within `timeout`."""
    back: dict[str, float | None] = {"page": None, "v1": None, "chat": None}
    deadline = since + timeout
    with httpx.Client(base_url=web_url) as client:
        while time.monotonic() < deadline and None in back.values():
            if back["page"] is None and page(client, fixture) == "ok":
                back["page"] = time.monotonic() - since
            if back["v1"] is None and api_call(client, fixture, stream=False, timeout=10)[0] == "ok":
                back["v1"] = time.monotonic() - since
            if back["chat"] is None:
                outcome, mid = chat_turn(client, fixture, fixture.next_conversation(), timeout=10)
                if outcome == "ok":
                    # Back once a worker has taken the turn and it answers (not when the send was accepted: the
                    # worker's broker connection may still be coming back); the answer's own length not counted.
                    started = _wait_message(mid, turn_timeout, until=("streaming", "done"))
                    if started is not None and _wait_message(mid, turn_timeout) == "done":
                        back["chat"] = started - since
            time.sleep(0.1)
    return back


_database_url = ""  # set by django_setup: the tally reads with plain psycopg, not through the code under test


def _pg(query: str, params=()) -> list[tuple]:
    with psycopg.connect(_database_url, connect_timeout=5) as conn:
        return conn.execute(query, params).fetchall()


def _wait_message(message_id: int, timeout: float, until=None):
    """Poll the message's status until it has ended (returns the status), or with `until` (statuses) until it
    reaches one of them (returns the monotonic time it was seen); None at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            rows = _pg("SELECT status FROM conversations_message WHERE id = %s", [message_id])
        except Exception:  # noqa: BLE001 - the database may still be coming back
            rows = []
        if rows and until is not None and rows[0][0] in until:
            return time.monotonic()
        if rows and until is None and rows[0][0] in ("done", "failed", "cancelled"):
            return rows[0][0]
        time.sleep(0.05)
    return None


def wait_turns_finished(fixture: Fixture, timeout: float = 180.0) -> int:
    """Wait until the tenant has no queued or streaming turn (or the deadline); returns how many are left."""
    deadline = time.monotonic() + timeout
    left = -1
    while time.monotonic() < deadline:
        try:
            left = _pg("SELECT count(*) FROM conversations_message WHERE tenant_id = %s AND role = 'assistant' "
                       "AND status IN ('queued', 'streaming')", [fixture.tenant_id])[0][0]
        except Exception:  # noqa: BLE001
            left = -1
        if left == 0:
            return 0
        time.sleep(0.5)
    return left


def tally(fixture: Fixture, load_outcomes: list[Outcome], *, settle: float = 5.0) -> dict[str, object]:
    """The figures every drill prints: answers served (complete /v1 answers and chat turns done), usage rows,
    answers without exactly one usage row, double charges, turns by state and turns unfinished.

    A /v1 answer is matched to its row by the request id (`api:<id>`), a chat turn by its message
    (`chat:<id>`); the ledger's unique key makes two rows under one key impossible, so a double charge would
    show as a row whose key matches no answer of this drill, or as two rows for one message."""
    time.sleep(settle)  # rows are written just after answers end (and an outbox drains): let them land
    api_ok = [o.ident for o in load_outcomes if o.kind.startswith("api") and o.outcome == "ok"]
    rows = _pg("SELECT key FROM billing_usagerecord WHERE tenant_id = %s", [fixture.tenant_id])
    keys: dict[str, int] = {}
    for (key,) in rows:
        keys[key] = keys.get(key, 0) + 1
    turns = dict(_pg("SELECT status, count(*) FROM conversations_message WHERE tenant_id = %s "
                     "AND role = 'assistant' GROUP BY status", [fixture.tenant_id]))
    done_ids = [r[0] for r in _pg("SELECT id FROM conversations_message WHERE tenant_id = %s "
                                   "AND role = 'assistant' AND status = 'done'", [fixture.tenant_id])]
    answer_keys = [f"api:{rid}" for rid in api_ok] + [f"chat:{mid}" for mid in done_ids]
    unbilled = sum(1 for k in answer_keys if keys.get(k, 0) == 0)
    double = sum(1 for k in answer_keys if keys.get(k, 0) > 1)
    api_keys = {f"api:{rid}" for rid in api_ok}
    # A row for a /v1 call whose client saw no complete answer (cut short, or the client gave up) is billed
    # work, not a double charge; a double charge would be two rows for one answer.
    api_rows_without_answer = sum(1 for k in keys if k.startswith("api:") and k not in api_keys)
    unfinished = turns.get("queued", 0) + turns.get("streaming", 0)
    ended_ids = {f"chat:{r[0]}" for r in _pg("SELECT id FROM conversations_message WHERE tenant_id = %s AND "
                                             "role = 'assistant' AND status IN ('failed', 'cancelled')",
                                             [fixture.tenant_id])}
    estimated = _pg("SELECT count(*) FROM billing_usagerecord WHERE tenant_id = %s AND output_estimated",
                    [fixture.tenant_id])[0][0]
    failures: dict[str, int] = {}
    for o in load_outcomes:
        if o.outcome != "ok":
            failures[f"{o.kind} {o.outcome}"] = failures.get(f"{o.kind} {o.outcome}", 0) + 1
    return {
        "answers served (/v1 complete)": len(api_ok),
        "answers served (chat turns done)": len(done_ids),
        "usage rows": len(rows),
        "answers without exactly one usage row": unbilled + double,
        "  of which unbilled": unbilled,
        "double charges": double,
        "/v1 rows without a complete answer (cut short, billed)": api_rows_without_answer,
        "failed or stopped turns billed (what they generated)": sum(1 for k in keys if k in ended_ids),
        "usage rows with an estimated output count": estimated,
        "turns by state": turns,
        "turns done": turns.get("done", 0),
        "turns unfinished": unfinished,
        "requests refused or failed (by kind)": failures,
    }


def print_figures(title: str, figures: dict[str, object]) -> None:
    print(f"\n== {title} ==")
    for name, value in figures.items():
        if isinstance(value, float):
            value = f"{value:.2f}"
        print(f"  {name}: {value}")
    sys.stdout.flush()
