"""Chat search at scale: 1,000,000 messages in 1,000 tenants; the median and p95 latency of a search.

Goal: under 100 ms at the median. Each search is the real code path (`conversations.search.message_search`: the
user's own conversations in one tenant, newest first, 20 hits with ts_headline snippets) for a random member
of a random tenant, with a query drawn from words of every frequency (common, middling, rare, two words, a
phrase). Uses its own database (default kc_bench_search, created if missing):

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/kc_bench_search \\
        .venv/bin/python bench/chat_search.py [--messages 1000000] [--tenants 1000] [--searches 300] [--fresh]

The messages are made in Python (a vocabulary with Zipf-like word frequencies, 8 to 40 words each) and bulk
loaded with COPY through psycopg; Postgres computes each row's stored tsvector (`search_vector`) as it loads;
the `msg_search` GIN index is dropped during the load and built again after it, from the model's own
definition. Data is kept between runs (pass --fresh to regenerate).
"""

import argparse
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/kc_bench_search")
os.environ.setdefault("DJANGO_SECRET_KEY", "bench")
os.environ["DJANGO_DEBUG"] = "0"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kiwiclaw.settings")

SYLLABLES = ["ka", "ki", "ko", "ra", "ro", "ta", "te", "mo", "mi", "na", "ne", "lu", "pa", "po", "se", "su", "wa",
             "he", "ho", "tu", "ri", "no", "ma", "ke", "ve", "zi", "da", "bo", "gu", "fi"]
CONVERSATIONS_PER_TENANT = 10


def ensure_database(url: str) -> None:
    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    args = ["-h", parsed.hostname or "127.0.0.1", "-p", str(parsed.port or 5432), "-U", parsed.username or "postgres"]
    exists = subprocess.run(["psql", *args, "-d", "postgres", "-tAc", f"SELECT 1 FROM pg_database WHERE datname = '{name}'"],
                            capture_output=True, text=True, check=True).stdout.strip()
    if not exists:
        subprocess.run(["createdb", *args, name], check=True)


def vocabulary(rng: random.Random, size: int = 20_000) -> list[str]:
    words = set()
    while len(words) < size:
        words.add("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))))
    return sorted(words)


def load(*, messages: int, tenants: int, rng: random.Random, vocab: list[str]) -> None:
    from django.db import connection

    from conversations import sql
    from conversations.models import Conversation, Message
    from tenants.models import Membership, Plan, Tenant, User

    t0 = time.perf_counter()
    plan = Plan.objects.order_by("monthly_fee").last()
    Tenant.objects.bulk_create([Tenant(slug=f"search-{i:05d}", name=f"Search {i:05d}", plan=plan)
                                for i in range(tenants)], batch_size=1000)
    tenant_rows = list(Tenant.objects.filter(slug__startswith="search-").order_by("id"))
    User.objects.bulk_create([User(email=f"member{i:05d}@search.test", name=f"Member {i}") for i in range(tenants)],
                             batch_size=1000)
    users = list(User.objects.filter(email__endswith="@search.test").order_by("email"))
    Membership.objects.bulk_create([Membership(tenant=t, user=u, role="member") for t, u in zip(tenant_rows, users,
                                                                                               strict=True)])
    Conversation.objects.bulk_create([Conversation(tenant=t, owner=u, title=f"chat {j}")
                                      for t, u in zip(tenant_rows, users, strict=True)
                                      for j in range(CONVERSATIONS_PER_TENANT)], batch_size=5000)
    conversations = list(Conversation.objects.filter(tenant__slug__startswith="search-")
                         .order_by("id").values_list("id", "tenant_id"))
    print(f"tenants, members, conversations in {time.perf_counter() - t0:.1f} s")

    # Zipf-like: the k-th word is drawn with weight 1/k.
    cum, total = [], 0.0
    for k in range(1, len(vocab) + 1):
        total += 1 / k
        cum.append(total)
    template = Message(tenant_id=0, conversation_id=0, role="user", content="", status="done")
    names, _values, params = sql.insert_values(template)
    columns = [name.strip() for name in names.split(",")]
    at = {name.strip('"'): i for i, name in enumerate(columns)}
    t0 = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("DROP INDEX IF EXISTS msg_search")
        with cursor.cursor.copy(f"COPY {Message._meta.db_table} ({names}) FROM STDIN") as copy:
            for n in range(messages):
                conversation_id, tenant_id = conversations[n % len(conversations)]
                row = list(params)
                row[at["tenant_id"]], row[at["conversation_id"]] = tenant_id, conversation_id
                row[at["role"]] = "user" if n % 2 == 0 else "assistant"
                row[at["content"]] = " ".join(rng.choices(vocab, cum_weights=cum, k=rng.randint(8, 40)))
                copy.write_row(row)
    print(f"COPY of {messages:,} messages in {time.perf_counter() - t0:.1f} s")
    build_index()


def build_index() -> None:
    from django.db import connection

    from conversations.models import Message

    [index] = [i for i in Message._meta.indexes if i.name == "msg_search"]
    t0 = time.perf_counter()
    with connection.cursor() as cursor, connection.schema_editor() as editor:
        cursor.execute("SET maintenance_work_mem = '512MB'")
        cursor.execute("DROP INDEX IF EXISTS msg_search")
        cursor.execute(str(index.create_sql(Message, editor)))
        cursor.execute(f"ANALYZE {Message._meta.db_table}")
    print(f"GIN index msg_search built in {time.perf_counter() - t0:.1f} s")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--searches", type=int, default=300)
    parser.add_argument("--fresh", action="store_true", help="delete and regenerate the bench data")
    args = parser.parse_args()

    ensure_database(os.environ["DATABASE_URL"])
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from conversations.models import Message
    from conversations.search import message_search
    from tenants.models import Membership

    call_command("migrate", verbosity=0)
    rng = random.Random(15)
    vocab = vocabulary(rng)
    if args.fresh:
        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE conversations_message, conversations_conversation CASCADE")
            cursor.execute("DELETE FROM tenants_membership WHERE tenant_id IN "
                           "(SELECT id FROM tenants_tenant WHERE slug LIKE 'search-%%')")
            cursor.execute("DELETE FROM tenants_tenant WHERE slug LIKE 'search-%%'")
            cursor.execute("DELETE FROM tenants_user WHERE email LIKE '%%@search.test'")
    count = Message.objects.count()
    if count < args.messages:
        load(messages=args.messages - count, tenants=args.tenants, rng=rng, vocab=vocab)
    count = Message.objects.count()

    members = list(Membership.objects.filter(tenant__slug__startswith="search-").select_related("tenant", "user"))
    queries = ([vocab[k] for k in (0, 1, 2, 5, 10)]  # common: in a large share of messages
               + [vocab[k] for k in (50, 100, 200, 400)]  # middling
               + [vocab[k] for k in (2000, 5000, 10000, 19000)]  # rare
               + [f"{vocab[3]} {vocab[300]}", f'"{vocab[0]} {vocab[1]}"', f"{vocab[7]} -{vocab[0]}"])
    times, hits = [], []
    for _ in range(20):  # warm the cache and the connection
        member = rng.choice(members)
        message_search(tenant=member.tenant, user=member.user, query=rng.choice(queries))
    for _ in range(args.searches):
        member, query = rng.choice(members), rng.choice(queries)
        t0 = time.perf_counter()
        found = message_search(tenant=member.tenant, user=member.user, query=query)
        times.append((time.perf_counter() - t0) * 1000)
        hits.append(len(found))
    times.sort()
    p95 = times[int(len(times) * 0.95) - 1]
    print(f"messages: {count:,} in {len(members):,} tenants; searches: {len(times)}; hits per search: "
          f"median {statistics.median(hits):.0f}, max {max(hits)}")
    print(f"search latency: median {statistics.median(times):.1f} ms, p95 {p95:.1f} ms, max {times[-1]:.1f} ms "
          f"(goal: median < 100 ms)")
    member = members[0]
    with connection.cursor() as cursor:
        cursor.execute(
            "EXPLAIN SELECT id FROM conversations_message WHERE tenant_id = %s AND "
            "search_vector @@ websearch_to_tsquery('english', %s)", [member.tenant_id, vocab[5000]])
        print("plan of the match (a rare word):")
        for (line,) in cursor.fetchall():
            print("   ", line)


if __name__ == "__main__":
    main()
