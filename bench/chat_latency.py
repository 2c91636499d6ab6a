"""Chat latency and capacity, end to end, printing figures (no pass/fail; see docs/architecture.md "Chat").

Starts the fake provider (300 tokens at 20 ms each), one Celery worker process (thread pool, shared asyncio
loop) and uvicorn serving the SSE view, against DATABASE_URL / REDIS_URL (run `manage.py migrate` first):

  DJANGO_SECRET_KEY=bench DATABASE_URL=postgres://postgres@127.0.0.1:5432/kc_chat \
  REDIS_URL=redis://127.0.0.1:6379/6 .venv/bin/python bench/chat_latency.py

(1) 50 concurrent turns: time from the POST of the message to the first delta at an SSE client, against the
    provider's own time to first token measured directly at the same concurrency; prints the medians and the
    overhead.
(2) 200 concurrent turns on that one worker process: prints peak turns in flight (assistant messages in
    `streaming`), peak Postgres connections to the database (all processes, this script's included), errors.
"""

import asyncio
import os
import re
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kiwiclaw.settings")

import django  # noqa: E402

django.setup()

import httpx  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.sessions.backends.db import SessionStore  # noqa: E402
from django.db import connection  # noqa: E402

from conversations import services  # noqa: E402
from conversations.models import Message  # noqa: E402
from tenants.models import Membership, Plan, Tenant, User  # noqa: E402

TOKENS, DELAY_MS = 300, 20
MODEL = "kimi-k2.5"


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
    import threading

    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    log = open(out / f"chat_latency.{name}.log", "w")  # noqa: SIM115 (closed with the process)

    def pump():
        for line in proc.stdout:
            log.write(line)
        log.close()

    threading.Thread(target=pump, daemon=True).start()


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


async def provider_ttft(url, n):
    """The provider's own time to first token, n concurrent streams, straight to it."""
    async with httpx.AsyncClient(timeout=60) as client:
        async def one():
            t0 = time.perf_counter()
            body = {"model": MODEL, "stream": True, "messages": [{"role": "user", "content": "hello"}]}
            async with client.stream("POST", f"{url}/v1/chat/completions", json=body,
                                     headers={"authorization": "Bearer x"}) as response:
                async for line in response.aiter_lines():
                    if '"content"' in line:
                        return time.perf_counter() - t0
        return await asyncio.gather(*(one() for _ in range(n)))


async def post_to_first_delta(web, conversations, session_key):
    csrf = secrets.token_hex(16)
    headers = {"cookie": f"sessionid={session_key}; csrftoken={csrf}", "x-csrftoken": csrf, "hx-request": "true"}
    limits = httpx.Limits(max_connections=500, max_keepalive_connections=500)
    async with httpx.AsyncClient(base_url=web, timeout=120, headers=headers, limits=limits) as client:
        async def one(conversation):
            t0 = time.perf_counter()
            response = await client.post(f"/chat/{conversation.pk}/messages/", data={"text": "Tell me a story"})
            response.raise_for_status()
            posted = time.perf_counter() - t0
            stream_url = re.search(r'sse-connect="([^"]+)"', response.text).group(1)
            first = None
            async with client.stream("GET", stream_url) as sse:
                async for line in sse.aiter_lines():
                    if first is None and line == "event: delta":
                        first = time.perf_counter() - t0
                    if line == "event: final":
                        break
            return first, posted
        return await asyncio.gather(*(one(c) for c in conversations))


def pg_connections():
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
        return cursor.fetchone()[0]


def main():
    tenant, user, session_key = setup_people()
    env = dict(os.environ, DJANGO_SECURE_SSL_REDIRECT="0", DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost")
    fake, fake_url = start([sys.executable, "-m", "routing.fake_provider", "--port", "0"], env,
                           r"FAKE_PROVIDER_URL (\S+)")
    drain(fake, 'fake')
    env.update({"ANTHROPIC_BASE_URL": fake_url, "ANTHROPIC_API_KEY": "fake", "MOONSHOT_BASE_URL": f"{fake_url}/v1",
                "MOONSHOT_API_KEY": "fake"})
    httpx.post(f"{fake_url}/_control/scenario", json={"model": MODEL, "tokens": TOKENS, "delay_ms": DELAY_MS})
    worker, _ = start([sys.executable, "-m", "celery", "-A", "kiwiclaw", "worker", "--pool", "threads",
                       "--concurrency", "250", "--loglevel", "INFO", "--without-gossip", "--without-mingle"], env,
                      r"(ready)")
    drain(worker, 'worker')
    web, port = start([sys.executable, "-m", "uvicorn", "kiwiclaw.asgi:application", "--host", "127.0.0.1",
                       "--port", "0", "--loop", "uvloop", "--http", "httptools", "--no-access-log"], env,
                      r"running on http://127\.0\.0\.1:(\d+)")
    drain(web, 'web')
    web_url = f"http://127.0.0.1:{port}"
    try:
        # Warm up: the catalog, connection pools, the provider's first connection.
        convs = [services.conversation_create(tenant=tenant, owner=user, title=f"bench warm {i}") for i in range(5)]
        asyncio.run(post_to_first_delta(web_url, convs, session_key))

        # One turn at a time, for scale.
        solo_direct, solo = [], []
        for i in range(5):
            solo_direct += asyncio.run(provider_ttft(fake_url, 1))
            conv = services.conversation_create(tenant=tenant, owner=user, title=f"bench solo {i}")
            solo += asyncio.run(post_to_first_delta(web_url, [conv], session_key))
        print(f"(0) one turn at a time: provider TTFT median {statistics.median(solo_direct) * 1000:.1f} ms, "
              f"POST -> first delta median {statistics.median(f for f, _ in solo) * 1000:.1f} ms, "
              f"POST answered median {statistics.median(p for _, p in solo) * 1000:.1f} ms")

        n = 50
        direct = [t for t in asyncio.run(provider_ttft(fake_url, n)) if t is not None]
        convs = [services.conversation_create(tenant=tenant, owner=user, title=f"bench {i}") for i in range(n)]
        results = asyncio.run(post_to_first_delta(web_url, convs, session_key))
        got = [first for first, _ in results if first is not None]
        posts = [posted for _, posted in results]
        med_direct, med_first = statistics.median(direct) * 1000, statistics.median(got) * 1000
        print(f"(1) {n} concurrent turns, {TOKENS} tokens at {DELAY_MS} ms")
        print(f"    provider's own TTFT, median     {med_direct:8.1f} ms  (p90 {sorted(direct)[int(.9 * len(direct))] * 1000:.1f})")
        print(f"    POST -> first SSE delta, median {med_first:8.1f} ms  (p90 {sorted(got)[int(.9 * len(got))] * 1000:.1f})")
        print(f"    POST answered, median           {statistics.median(posts) * 1000:8.1f} ms")
        print(f"    overhead at the median          {med_first - med_direct:8.1f} ms  (goal < 50 ms); "
              f"turns without a delta: {n - len(got)}")

        # Part 2 measures the worker alone: the web server and its connection pool go away first.
        web.terminate()
        web.wait(timeout=15)
        n = 200
        convs = [services.conversation_create(tenant=tenant, owner=user, title=f"load {i}") for i in range(n)]
        t0 = time.monotonic()
        ids = [services.message_send(conversation=c, author=user, text="Tell me a long story").pk for c in convs]
        peak_turns = peak_pg = 0
        while True:
            counts = dict(Message.objects.filter(pk__in=ids).values_list("status").annotate(
                n=django.db.models.Count("id")))
            peak_turns = max(peak_turns, counts.get("streaming", 0))
            peak_pg = max(peak_pg, pg_connections())
            if sum(counts.get(s, 0) for s in Message.FINISHED) == n or time.monotonic() - t0 > 300:
                break
            time.sleep(0.25)
        done = Message.objects.filter(pk__in=ids, status="done", output_tokens=TOKENS).count()
        print(f"(2) {n} concurrent turns on one worker process ({time.monotonic() - t0:.1f} s)")
        print(f"    peak turns in flight {peak_turns}, peak Postgres connections {peak_pg} (goal <= 20)")
        print(f"    done with all {TOKENS} tokens: {done}/{n}; errors: {n - done}")
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
