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
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

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

from conversations import services  # noqa: E402
from conversations.models import Message  # noqa: E402
from tenants.models import Membership, Plan, Tenant, User  # noqa: E402

TOKENS, DELAY_MS = 300, 20
MODEL = "kimi-k2.5"
TURN_SECONDS = TOKENS * DELAY_MS / 1000


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def start(cmd, env, pattern):
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        match = re.search(pattern, line)
        if match:
            return proc, match.group(1)
        if proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError(f"{cmd[2]} did not start")


def drain(proc, name):
    """Keep reading a child's output so its pipe never fills; kept in bench/results/ (gitignored)."""
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    log = open(out / f"chat_latency.{name}.log", "w")  # noqa: SIM115 (closed with the process)

    def pump():
        for line in proc.stdout:
            log.write(line)
        log.close()

    threading.Thread(target=pump, daemon=True).start()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_web(env, *, server: str, workers: int):
    """The web app served as docs/operations.md says (granian, ASGI, uvloop, one worker per core)."""
    port = free_port()
    if server == "granian":
        cmd = [str(Path(sys.executable).parent / "granian"), "--interface", "asginl", "--loop", "uvloop",
               "--workers", str(workers), "--host", "127.0.0.1", "--port", str(port), "--no-ws",
               "kiwiclaw.asgi:application"]
    else:
        cmd = [sys.executable, "-m", "uvicorn", "kiwiclaw.asgi:application", "--host", "127.0.0.1", "--port",
               str(port), "--workers", str(workers), "--loop", "uvloop", "--http", "httptools", "--lifespan", "off",
               "--no-access-log"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    drain(proc, "web")
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{server} exited early (bench/results/chat_latency.web.log)")
        try:
            httpx.get(url + "/healthz", timeout=1)
            return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"{server} did not come up")


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


def _has_text(line: str) -> bool:
    """An OpenAI-format chunk carrying answer text (the first chunk only says role=assistant, content "")."""
    if not line.startswith("data: {"):
        return False
    choices = orjson.loads(line[6:]).get("choices") or [{}]
    return bool(choices[0].get("delta", {}).get("content"))


async def provider_first_token(client: httpx.AsyncClient, url: str) -> float:
    t0 = time.perf_counter()
    body = {"model": MODEL, "stream": True, "messages": [{"role": "user", "content": "hello"}]}
    async with client.stream("POST", f"{url}/v1/chat/completions", json=body,
                             headers={"authorization": "Bearer x"}) as response:
        first, buffer = None, b""
        async for chunk in response.aiter_raw():
            if first is None:  # lines are looked at only until the first text; the rest is just read
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                if any(_has_text(line.decode()) for line in lines):
                    first = time.perf_counter() - t0
        return first  # the whole answer is read, so the provider streams it as it would to the worker


async def turn(client: httpx.AsyncClient, conversation_id: int) -> tuple[float | None, float]:
    """(POST -> first SSE delta, POST answered), in seconds."""
    t0 = time.perf_counter()
    response = await client.post(f"/chat/{conversation_id}/messages/", data={"text": "Tell me a story"})
    response.raise_for_status()
    posted = time.perf_counter() - t0
    stream_url = re.search(r'sse-connect="([^"]+)"', response.text).group(1)
    first, tail = None, b""
    # Raw bytes, no line parsing: the load generator shares the machine and should cost it as little as it can.
    async with client.stream("GET", stream_url) as sse:
        async for chunk in sse.aiter_raw():
            seen = tail + chunk
            if first is None and b"event: delta" in seen:
                first = time.perf_counter() - t0
            if b"event: final" in seen:
                break
            tail = seen[-16:]
    return first, posted


def web_client(web: str, session_key: str) -> httpx.AsyncClient:
    csrf = secrets.token_hex(16)
    headers = {"cookie": f"sessionid={session_key}; csrftoken={csrf}", "x-csrftoken": csrf, "hx-request": "true"}
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=1000)
    return httpx.AsyncClient(base_url=web, timeout=120, headers=headers, limits=limits)


def provider_client() -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=1000)
    return httpx.AsyncClient(timeout=120, limits=limits)


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
        async with provider_client() as pc, web_client(web_url, session_key) as wc:
            direct, turns = [], []
            for conv in convs:
                direct.append(await provider_first_token(pc, fake_url))
                turns.append(await turn(wc, conv))
            return direct, turns

    direct, turns = asyncio.run(run())
    print(f"(0) one turn at a time, {TOKENS} tokens at {DELAY_MS} ms")
    report_latency("solo", direct, turns)


def part1(web_url, fake_url, tenant, user, session_key, n=50, rounds=3):
    print(f"(1) {n} concurrent turns, {TOKENS} tokens at {DELAY_MS} ms")

    convs = conversations(tenant, user, n, "burst")

    async def run_burst():
        async with provider_client() as pc:
            direct = await burst(lambda _i: provider_first_token(pc, fake_url), n)
        async with web_client(web_url, session_key) as wc:
            turns = await burst(lambda i: turn(wc, convs[i]), n)
        return direct, turns

    report_latency("burst ", *asyncio.run(run_burst()))

    convs = conversations(tenant, user, n * rounds, "steady")

    async def run_steady():
        async with provider_client() as pc:
            direct = await steady(lambda _i: provider_first_token(pc, fake_url), n, rounds)
        async with web_client(web_url, session_key) as wc:
            turns = await steady(lambda i: turn(wc, convs[i]), n, rounds)
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
    print(f"start [{load()}]")
    env = dict(os.environ, DJANGO_SECURE_SSL_REDIRECT="0", DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost")
    fake, fake_url = start([sys.executable, "-m", "routing.fake_provider", "--port", "0"], env,
                           r"FAKE_PROVIDER_URL (\S+)")
    drain(fake, "fake")
    env.update({"ANTHROPIC_BASE_URL": fake_url, "ANTHROPIC_API_KEY": "fake", "MOONSHOT_BASE_URL": f"{fake_url}/v1",
                "MOONSHOT_API_KEY": "fake"})
    httpx.post(f"{fake_url}/_control/scenario", json={"model": MODEL, "tokens": TOKENS, "delay_ms": DELAY_MS})
    worker, _ = start([sys.executable, "-m", "celery", "-A", "kiwiclaw", "worker", "--pool", "threads",
                       "--concurrency", "250", "--loglevel", "INFO", "--without-gossip", "--without-mingle"], env,
                      r"(ready)")
    drain(worker, "worker")
    web, web_url = start_web(env, server=args.server, workers=args.web_workers)
    try:
        # Warm up: the catalog, connection pools, the provider's first connections.
        convs = conversations(tenant, user, 5, "warm")

        async def warm():
            async with web_client(web_url, session_key) as wc:
                await burst(lambda i: turn(wc, convs[i]), 5)

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
