"""Chat latency and capacity, end to end, printing figures (no pass/fail; see docs/architecture.md "Chat").

Starts the fake provider (300 tokens at 20 ms each), one Celery worker process (thread pool, shared asyncio
loop) and the web app served as docs/operations.md says (granian, ASGI, uvloop, 2 workers; `--server uvicorn`
for the alternative), against DATABASE_URL / REDIS_URL (run `manage.py migrate` first):

  DJANGO_SECRET_KEY=bench DATABASE_URL=postgres://postgres@127.0.0.1:5432/kc_chat \
  REDIS_URL=redis://127.0.0.1:6379/6 .venv/bin/python bench/chat_latency.py [--only 0,1,2]

A turn is measured as a browser sees it: POST the message (the HTMX form), then open the SSE stream named in
the answer at once (as htmx does when it swaps the placeholder in), and take the time from sending the POST to
the first `delta` event. The provider's own time to first token is measured the same way straight against the
fake provider: from sending the request to the first chunk carrying text (not the empty role chunk that
precedes it), at the same concurrency.

(0) one turn at a time.
(1) 50 concurrent turns, two ways:
    burst   - all 50 POSTed at the same instant (the worst case: 50 people pressing Enter together);
    steady  - 50 users each sending a message as soon as their previous answer ended, starts spread over one
              answer's length, so about 50 turns are always streaming; the first round is not counted.
(2) 200 concurrent turns on that one worker process (the web server is stopped first; messages are sent with the
    service from a few threads so they all start within a second or two): peak turns in flight (assistant
    messages in `streaming`), peak Postgres connections to the database (all processes, this script's
    included), and errors: turns that failed, fell back to another model, or ended short of 300 tokens.

Every figure is printed with the load average at the time: the machine is shared, and the figures move with it.
"""

import argparse
import asyncio
import os
import re
import secrets
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kiwiclaw.settings")

import django  # noqa: E402

django.setup()

import httpx  # noqa: E402
import orjson  # noqa: E402
from django.contrib.sessions.backends.db import SessionStore  # noqa: E402
from django.db import connection  # noqa: E402
from django.db.models import Count  # noqa: E402
from procs import drain, free_port, load, server_command, start, wait_http  # noqa: E402

from conversations import services  # noqa: E402
from conversations.models import Message  # noqa: E402
from tenants.models import Membership, Plan, Tenant, User  # noqa: E402

TOKENS, DELAY_MS = 300, 20
MODEL = "kimi-k2.5"
TURN_SECONDS = TOKENS * DELAY_MS / 1000


def start_web(env, *, server: str, workers: int):
    """The web app served as docs/operations.md says (granian, ASGI, uvloop, one worker per core)."""
    port = free_port()
    proc = subprocess.Popen(server_command(server, port, workers), cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    drain(proc, "chat_latency.web")
    url = f"http://127.0.0.1:{port}"
    wait_http(url, "/healthz", proc=proc)
    return proc, url


def setup_people():
    plan = Plan.objects.get(slug="enterprise")
    tenant, _ = Tenant.objects.get_or_create(slug="bench-chat", defaults={"name": "Bench chat", "plan": plan})
    user, created = User.objects.get_or_create(email="bench-chat@kiwiclaw.test")
    if created:
        user.set_password(secrets.token_hex(8))
        user.save()
    Membership.objects.get_or_create(user=user, tenant=tenant, defaults={"role": "admin"})
    session = SessionStore()
    session["_auth_user_id"] = str(user.pk)
    session["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
    session["_auth_user_hash"] = user.get_session_auth_hash()
    session["tenant_id"] = tenant.pk
    session.create()
    return tenant, user, session.session_key


class Raw:
    """One keep-alive HTTP/1.1 connection of the load generator: asyncio streams and a byte scan, nothing more.

    The load generator shares the two cores with everything it measures, so it should cost as little as it can:
    reading 50 streams through httpx took about a quarter of a core. A turn uses two connections as a browser
    would (one for its posts, one for the event stream), and reuses them for its next turn."""

    def __init__(self, url: str, headers: bytes = b""):
        parts = urlsplit(url)
        self.host, self.port, self.headers = parts.hostname, parts.port, headers
        self.reader = self.writer = None

    async def send(self, method: str, path: str, body: bytes = b"", headers: bytes = b"") -> int | None:
        """Send a request and read its head; returns its Content-Length (None for a chunked body)."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            self.writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        length = f"Content-Length: {len(body)}\r\n".encode() if body else b""
        self.writer.write(f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n".encode() + length + self.headers
                          + headers + b"\r\n" + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        if head[9:12] != b"200":
            raise RuntimeError(f"{method} {path}: {head.decode(errors='replace')}")
        match = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
        return int(match[1]) if match else None

    async def body(self, length: int | None) -> bytes:
        if length is not None:
            return await self.reader.readexactly(length)
        return b"".join([chunk async for chunk in self.chunks()])

    async def chunks(self):
        """The raw bytes of a chunked body as they arrive (framing included), until its last chunk."""
        tail = b""
        while True:
            data = await self.reader.read(65536)
            if not data:
                raise ConnectionError("closed mid-body")
            yield data
            tail = (tail + data)[-7:]
            if tail.endswith(b"\r\n0\r\n\r\n") or tail == b"0\r\n\r\n":
                return

    def close(self):
        if self.writer is not None:
            self.writer.close()


TEXT = re.compile(rb'"content": ?"[^"]')  # a chunk carrying answer text (the first one only says role=assistant)


async def provider_first_token(conn: Raw) -> float:
    t0 = time.perf_counter()
    body = orjson.dumps({"model": MODEL, "stream": True, "messages": [{"role": "user", "content": "hello"}]})
    await conn.send("POST", "/v1/chat/completions", body, b"Content-Type: application/json\r\n")
    first, tail = None, b""
    async for chunk in conn.chunks():  # the whole answer is read, so the provider streams it as it would to the worker
        if first is None:
            seen = tail + chunk
            if TEXT.search(seen):
                first = time.perf_counter() - t0
            tail = seen[-32:]
    return first


FORM = b"Content-Type: application/x-www-form-urlencoded\r\n"


async def turn(conns: tuple[Raw, Raw], conversation_id: int) -> tuple[float | None, float]:
    """(POST -> first SSE delta, POST answered), in seconds."""
    posts, events = conns
    t0 = time.perf_counter()
    html = await posts.body(await posts.send("POST", f"/chat/{conversation_id}/messages/", b"text=Tell+me+a+story",
                                             FORM))
    posted = time.perf_counter() - t0
    stream_url = re.search(rb'sse-connect="([^"]+)"', html)[1].decode()
    await events.send("GET", stream_url)
    first, tail = None, b""
    async for chunk in events.chunks():
        seen = tail + chunk
        if first is None and b"event: delta" in seen:
            first = time.perf_counter() - t0
        tail = seen[-16:]
    return first, posted


def web_conns(web: str, session_key: str, n: int) -> list[tuple[Raw, Raw]]:
    csrf = secrets.token_hex(16)
    headers = f"Cookie: sessionid={session_key}; csrftoken={csrf}\r\nX-CSRFToken: {csrf}\r\nHX-Request: true\r\n"
    return [(Raw(web, headers.encode()), Raw(web, headers.encode())) for _ in range(n)]


def provider_conns(url: str, n: int) -> list[Raw]:
    return [Raw(url, b"Authorization: Bearer x\r\n") for _ in range(n)]


def close(conns):
    for conn in conns:
        for c in conn if isinstance(conn, tuple) else (conn,):
            c.close()


async def burst(fn, n):
    return await asyncio.gather(*(fn(i) for i in range(n)))


async def steady(fn, users: int, rounds: int):
    """`users` closed loops of `rounds` calls each, starts spread over one answer; returns the results of all
    rounds but the first (each loop's first call starts into a system that is still filling up)."""
    async def user(i):
        await asyncio.sleep(TURN_SECONDS * i / users)
        return [await fn(i * rounds + r) for r in range(rounds)]

    per_user = await asyncio.gather(*(user(i) for i in range(users)))
    return [result for results in per_user for result in results[1:]]


def ms(values, q=0.5) -> str:
    values = sorted(v for v in values if v is not None)
    if not values:
        return "   n/a"
    return f"{values[min(len(values) - 1, int(q * len(values)))] * 1000:7.1f}"


def report_latency(label, direct, turns):
    firsts = [f for f, _ in turns if f is not None]
    med_direct, med_first = statistics.median(direct), statistics.median(firsts)
    print(f"    {label}: provider's own TTFT  median {ms(direct)} ms, p90 {ms(direct, .9)} ms  ({len(direct)} streams)")
    print(f"    {label}: POST -> first delta  median {ms(firsts)} ms, p90 {ms(firsts, .9)} ms  ({len(firsts)} turns, "
          f"{len(turns) - len(firsts)} without a delta)")
    print(f"    {label}: POST answered        median {ms([p for _, p in turns])} ms, "
          f"p90 {ms([p for _, p in turns], .9)} ms")
    print(f"    {label}: overhead at the median {(med_first - med_direct) * 1000:.1f} ms (goal < 50 ms)  [{load()}]")


def pg_connections():
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
        return cursor.fetchone()[0]


def conversations(tenant, user, n, label):
    return [services.conversation_create(tenant=tenant, owner=user, title=f"bench {label} {i}").pk for i in range(n)]


def part0(web_url, fake_url, tenant, user, session_key):
    convs = conversations(tenant, user, 5, "solo")

    async def run():
        pc, wc = provider_conns(fake_url, 1), web_conns(web_url, session_key, 1)
        direct, turns = [], []
        for conv in convs:
            direct.append(await provider_first_token(pc[0]))
            turns.append(await turn(wc[0], conv))
        close(pc + wc)
        return direct, turns

    direct, turns = asyncio.run(run())
    print(f"(0) one turn at a time, {TOKENS} tokens at {DELAY_MS} ms")
    report_latency("solo", direct, turns)


def part1(web_url, fake_url, tenant, user, session_key, n=50, rounds=3):
    print(f"(1) {n} concurrent turns, {TOKENS} tokens at {DELAY_MS} ms")

    convs = conversations(tenant, user, n, "burst")

    async def run_burst():
        pc = provider_conns(fake_url, n)
        direct = await burst(lambda i: provider_first_token(pc[i]), n)
        wc = web_conns(web_url, session_key, n)
        turns = await burst(lambda i: turn(wc[i], convs[i]), n)
        close(pc + wc)
        return direct, turns

    report_latency("burst ", *asyncio.run(run_burst()))

    convs = conversations(tenant, user, n * rounds, "steady")

    async def run_steady():
        pc = provider_conns(fake_url, n)
        direct = await steady(lambda i: provider_first_token(pc[i // rounds]), n, rounds)
        wc = web_conns(web_url, session_key, n)
        turns = await steady(lambda i: turn(wc[i // rounds], convs[i]), n, rounds)
        close(pc + wc)
        return direct, turns

    report_latency("steady", *asyncio.run(run_steady()))


def part2(tenant, user, n=200):
    convs = conversations(tenant, user, n, "load")
    t0 = time.monotonic()
    # A few threads, so that the 200 turns start together instead of over the ~20 s one thread takes to send them.
    with ThreadPoolExecutor(8) as pool:
        def send(pk):
            from conversations.models import Conversation

            try:
                return services.message_send(conversation=Conversation.objects.get(pk=pk), author=user,
                                             text="Tell me a long story").pk
            finally:
                connection.close()

        ids = list(pool.map(send, convs))
    sent = time.monotonic() - t0
    peak_turns = peak_pg = 0
    while True:
        counts = dict(Message.objects.filter(pk__in=ids).values_list("status").annotate(n=Count("id")))
        peak_turns = max(peak_turns, counts.get("streaming", 0))
        peak_pg = max(peak_pg, pg_connections())
        if sum(counts.get(s, 0) for s in Message.FINISHED) == n or time.monotonic() - t0 > 300:
            break
        time.sleep(0.25)
    elapsed = time.monotonic() - t0
    rows = Message.objects.filter(pk__in=ids)
    done = rows.filter(status="done", output_tokens=TOKENS, fallback_count=0, endpoint=MODEL).count()
    fell_back = rows.exclude(fallback_count=0).count()
    failed = rows.exclude(status="done").count()
    print(f"(2) {n} concurrent turns on one worker process: all sent in {sent:.1f} s, all ended after {elapsed:.1f} s "
          f"(one answer alone streams for {TURN_SECONDS:.0f} s)")
    print(f"    peak turns in flight {peak_turns}, peak Postgres connections {peak_pg} (goal <= 20)")
    print(f"    done with all {TOKENS} tokens from {MODEL}: {done}/{n}; errors: {n - done} "
          f"(failed or unfinished {failed}, fell back {fell_back})  [{load()}]")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default="0,1,2", help="parts to run, e.g. 1 or 0,2")
    parser.add_argument("--server", choices=["granian", "uvicorn"], default="granian")
    parser.add_argument("--web-workers", type=int, default=2, help="web server processes (docs: one per core)")
    args = parser.parse_args()
    parts = set(args.only.split(","))
    tenant, user, session_key = setup_people()
    with connection.cursor() as cursor:
        # Planner statistics as autovacuum keeps them in a deployment (this machine runs Postgres without it):
        # with stale ones, the history query walked the whole tenant instead of one conversation.
        cursor.execute("ANALYZE conversations_message, conversations_conversation")
    print(f"start [{load()}]")
    env = dict(os.environ, DJANGO_SECURE_SSL_REDIRECT="0", DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost")
    fake, fake_url = start([sys.executable, "-m", "devtools.fake_provider", "--port", "0"], env,
                           r"FAKE_PROVIDER_URL (\S+)")
    drain(fake, "chat_latency.fake")
    env.update({"ANTHROPIC_BASE_URL": fake_url, "ANTHROPIC_API_KEY": "fake", "MOONSHOT_BASE_URL": f"{fake_url}/v1",
                "MOONSHOT_API_KEY": "fake"})
    httpx.post(f"{fake_url}/_control/scenario", json={"model": MODEL, "tokens": TOKENS, "delay_ms": DELAY_MS})
    worker, _ = start([sys.executable, "-m", "celery", "-A", "kiwiclaw", "worker", "--pool", "threads",
                       "--concurrency", "250", "--loglevel", "INFO", "--without-gossip", "--without-mingle"], env,
                      r"(ready)")
    drain(worker, "chat_latency.worker")
    web, web_url = start_web(env, server=args.server, workers=args.web_workers)
    try:
        # Warm up: the catalog, connection pools, the provider's first connections.
        convs = conversations(tenant, user, 5, "warm")

        async def warm():
            wc = web_conns(web_url, session_key, 5)
            await burst(lambda i: turn(wc[i], convs[i]), 5)
            close(wc)

        asyncio.run(warm())
        if "0" in parts:
            part0(web_url, fake_url, tenant, user, session_key)
        if "1" in parts:
            part1(web_url, fake_url, tenant, user, session_key)
        # Part 2 measures the worker alone: the web server and its connection pool go away first.
        web.terminate()
        web.wait(timeout=15)
        if "2" in parts:
            part2(tenant, user)
    finally:
        for proc in (web, worker, fake):
            if proc.poll() is None:
                proc.terminate()
        for proc in (web, worker, fake):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    main()
