"""Latency the /v1 proxy adds over calling the provider directly, and its throughput (prints figures; no
pass/fail). See bench/README.md and docs/operations.md.

  DJANGO_SECRET_KEY=bench DATABASE_URL=postgres://postgres@127.0.0.1:5432/kc_proxy \
  REDIS_URL=redis://127.0.0.1:6379/7 .venv/bin/python bench/proxy_latency.py [--compare-litellm]

Starts the fake provider (zero latency, 12 tokens), migrates the database, makes a tenant on a plan without
rate limits or cap and an API key, and serves KiwiClaw the way docs/operations.md says (granian, ASGI without
lifespan, uvloop, 2 workers; `--server uvicorn` for uvicorn with uvloop/httptools). A small keep-alive HTTP/1.1
load generator (closed loop, one connection per client) then measures at 1, 8 and 32 concurrent clients:
  - non-streaming: request latency, direct to the fake provider vs through the proxy (model "auto");
  - streaming: time to the first body byte (TTFB), direct vs proxy;
  - throughput (requests per second) through the proxy.
"Added" = proxy minus direct at the same percentile. Every proxied request also writes its usage row.

With --compare-litellm it creates bench/.litellm-venv (gitignored), installs litellm[proxy]==1.108.7 there,
runs its proxy with 2 workers (`auto` → the fake's OpenAI-compatible kimi-k2.5, `max` → the fake's Anthropic
claude-opus-4-6, fallback max → auto) and prints both side by side.
"""

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
from procs import free_port, server_command, start_fake_provider, stop, wait_http

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kiwiclaw.settings")

LITELLM_VERSION = "1.108.7"
LITELLM_VENV = ROOT / "bench" / ".litellm-venv"
LITELLM_MASTER_KEY = "sk-bench-" + os.urandom(16).hex()  # its production mode refuses to start without one
CONCURRENCY = (1, 8, 32)
PROMPT = [{"role": "user", "content": "Tell me about kiwis, briefly please."}]


# --- a minimal keep-alive HTTP/1.1 client: its own overhead is small and the same for every target ---------

class Conn:
    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader = self.writer = None

    async def open(self):
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    async def post(self, path: str, body: bytes, headers: dict) -> tuple[int, float, float]:
        """Returns (status, seconds to the first body byte, seconds to the end)."""
        if self.writer is None:
            await self.open()
        head = f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        head += f"Content-Length: {len(body)}\r\n\r\n"
        start = time.perf_counter()
        self.writer.write(head.encode() + body)
        status_line = await self.reader.readline()
        status = int(status_line.split()[1])
        length, chunked, close = None, False, False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding" and "chunked" in value:
                chunked = True
            elif name == "connection" and value == "close":
                close = True
        first = None
        if chunked:
            while True:
                size = int((await self.reader.readline()).split(b";")[0], 16)
                if size == 0:
                    await self.reader.readline()
                    break
                await self.reader.readexactly(size + 2)
                first = first or time.perf_counter()
        elif length is not None:
            await self.reader.readexactly(length)
            first = time.perf_counter()
        else:
            await self.reader.read()
            close = True
        end = time.perf_counter()
        if close:
            self.writer.close()
            self.writer = None
        return status, (first or end) - start, end - start


async def load(url: str, path: str, body: dict, headers: dict, *, clients: int, total: int):
    """Closed loop: `clients` connections send `total` requests in all. Returns (latencies, ttfbs, rps, errors)."""
    host, port = url.removeprefix("http://").split(":")
    payload = orjson.dumps(body)
    latencies, ttfbs, errors = [], [], 0
    remaining = total

    async def client():
        nonlocal remaining, errors
        conn = Conn(host, int(port))
        while remaining > 0:
            remaining -= 1
            try:
                status, ttfb, latency = await conn.post(path, payload, headers)
            except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
                errors += 1
                conn.writer = None
                continue
            if status != 200:
                errors += 1
                continue
            latencies.append(latency)
            ttfbs.append(ttfb)
        if conn.writer is not None:
            conn.writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.perf_counter() - start
    return latencies, ttfbs, len(latencies) / elapsed, errors


def pct(samples: list[float], q: float) -> float:
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


# --- processes -----------------------------------------------------------------------------------------------

def start_kiwiclaw(fake_url: str, *, server: str, workers: int, raw_asgi: bool):
    port = free_port()
    env = {**os.environ, "DJANGO_DEBUG": "0", "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
           "DJANGO_SECURE_SSL_REDIRECT": "0", "LOG_LEVEL": "WARNING", "ANTHROPIC_BASE_URL": fake_url,
           "ANTHROPIC_API_KEY": "fake-anthropic-key", "MOONSHOT_BASE_URL": f"{fake_url}/v1",
           "MOONSHOT_API_KEY": "fake-moonshot-key", "PROXY_RAW_ASGI": "1" if raw_asgi else "0"}
    cmd = server_command(server, port, workers)
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_http(url, "/v1/models", proc=proc)
    return proc, url, " ".join(Path(c).name if i == 0 else c for i, c in enumerate(cmd))


def ensure_litellm() -> Path:
    binary = LITELLM_VENV / "bin" / "litellm"
    marker = LITELLM_VENV / f".installed-{LITELLM_VERSION}"
    if not marker.exists():
        print(f"installing litellm[proxy]=={LITELLM_VERSION} into {LITELLM_VENV} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
        subprocess.run([str(LITELLM_VENV / "bin" / "pip"), "install", "--quiet", f"litellm[proxy]=={LITELLM_VERSION}"],
                       check=True)
        marker.touch()
    return binary


def start_litellm(fake_url: str, workers: int):
    binary = ensure_litellm()
    config = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
    config.write(f"""model_list:
  - model_name: auto
    litellm_params: {{model: openai/kimi-k2.5, api_base: "{fake_url}/v1", api_key: fake-moonshot-key}}
  - model_name: max
    litellm_params: {{model: anthropic/claude-opus-4-6, api_base: "{fake_url}", api_key: fake-anthropic-key}}
router_settings:
  fallbacks: [{{"max": ["auto"]}}]
litellm_settings:
  num_retries: 0
  request_timeout: 30
""")
    config.close()
    port = free_port()
    # No network here: use the bundled model price map instead of fetching it.
    env = {**os.environ, "LITELLM_LOG": "ERROR", "LITELLM_MODE": "PRODUCTION", "LITELLM_LOCAL_MODEL_COST_MAP": "True",
           "LITELLM_MASTER_KEY": LITELLM_MASTER_KEY}
    for name in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE"):
        env.pop(name, None)  # LiteLLM would try to use our Postgres/Redis
    # Its workers import slowly on a loaded 2-core machine; uvicorn's 5 s worker health check would kill them.
    cmd = [str(binary), "--config", config.name, "--host", "127.0.0.1", "--port", str(port), "--num_workers",
           str(workers), "--timeout_worker_healthcheck", "180"]
    proc = subprocess.Popen(cmd, cwd=tempfile.gettempdir(), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_http(url, "/health/liveliness", timeout=300, proc=proc)
    return proc, url, f"litellm --num_workers {workers} (auto, max; fallback max→auto; num_retries 0)"


# --- the bench tenant ----------------------------------------------------------------------------------------

def bench_key(escalation: int = 0) -> str:
    """Migrate, then a tenant on a plan without limits or cap, with an admin and a fresh API key. The tenant's
    smart-Auto dial is set to `escalation` (0: Off, the proxy's floor is measured so)."""
    subprocess.run([sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"], cwd=ROOT, check=True)
    import django

    django.setup()
    from tenants.models import Membership, Plan, Tenant, User
    from tenants.services import api_key_create

    plan, _ = Plan.objects.get_or_create(slug="bench-unlimited", defaults={
        "name": "Bench (no limits)", "allowed_tiers": ["auto", "max"]})
    user, _ = User.objects.get_or_create(email="bench@example.test")
    tenant, _ = Tenant.objects.get_or_create(slug="bench", defaults={"name": "Bench", "plan": plan})
    tenant.auto_escalation = escalation
    tenant.save(update_fields=["auto_escalation"])
    Membership.objects.get_or_create(user=user, tenant=tenant, defaults={"role": "admin"})
    return api_key_create(tenant=tenant, name="bench", created_by=user)[1]


def usage_rows(*, settle: bool = False) -> int:
    """The bench tenant's usage rows. A row lands just after its answer, so `settle` waits until the count
    stops moving."""
    from billing.models import UsageRecord

    count = UsageRecord.objects.filter(tenant__slug="bench").count()
    deadline = time.monotonic() + 10
    while settle and time.monotonic() < deadline:
        time.sleep(0.2)
        previous, count = count, UsageRecord.objects.filter(tenant__slug="bench").count()
        if count == previous:
            break
    return count


# --- the run -------------------------------------------------------------------------------------------------

def requests_for(clients: int, scale: float) -> int:
    return int(max(300, 80 * clients) * scale)


async def measure(targets: dict, *, scale: float) -> dict:
    """targets: name -> (url, path, body builder(stream) -> dict, headers). Returns results[name][mode][c]."""
    results: dict = {}
    loads: dict = {}
    for name, (url, path, body_for, headers) in targets.items():
        await load(url, path, body_for(False), headers, clients=8, total=100)  # warm-up: pools, caches
        await load(url, path, body_for(True), headers, clients=8, total=50)
        loads[name] = [os.getloadavg()[0]]
        for mode in ("json", "stream"):
            for clients in CONCURRENCY:
                lat, ttfb, rps, errors = await load(url, path, body_for(mode == "stream"), headers,
                                                    clients=clients, total=requests_for(clients, scale))
                loads[name].append(os.getloadavg()[0])
                samples = ttfb if mode == "stream" else lat
                results.setdefault(name, {}).setdefault(mode, {})[clients] = {
                    "p50": pct(samples, 0.5), "p99": pct(samples, 0.99), "rps": rps, "errors": errors,
                    "n": len(samples)}
    # The machine is shared: say how loaded it was while each target was measured (1-minute load average).
    results["_load"] = {name: (min(values), max(values)) for name, values in loads.items()}
    return results


def report(results: dict, settings: dict) -> None:
    print()
    load = results.pop("_load", {})
    for name, line in settings.items():
        low, high = load.get(name, (float("nan"), float("nan")))
        print(f"  {name:<10} {line}  [load average {low:.1f}–{high:.1f}]")
    direct = results["direct"]
    proxies = [n for n in results if n != "direct"]
    for mode, title in (("json", "non-streaming latency"), ("stream", "streaming time to first byte")):
        print(f"\n{title} (ms; added = proxy − direct at the same percentile)")
        header = f"{'clients':>7} | {'direct p50':>10} {'p99':>7}"
        for name in proxies:
            header += f" | {name + ' +p50':>15} {'+p99':>8} {'req/s':>7} {'err':>4}"
        print(header)
        for clients in CONCURRENCY:
            d = direct[mode][clients]
            row = f"{clients:>7} | {d['p50']:>10.2f} {d['p99']:>7.2f}"
            for name in proxies:
                r = results[name][mode][clients]
                row += (f" | {r['p50'] - d['p50']:>15.2f} {r['p99'] - d['p99']:>8.2f} {r['rps']:>7.0f}"
                        f" {r['errors']:>4}")
            print(row)
    if "litellm" in results:
        print("\nKiwiClaw ÷ LiteLLM (added latency: goal ≤ 0.3 at p50, ≤ 0.5 at p99; throughput: goal ≥ 3)")
        for mode in ("json", "stream"):
            for clients in CONCURRENCY:
                d, k, lt = direct[mode][clients], results["kiwiclaw"][mode][clients], results["litellm"][mode][clients]
                ratio = {p: max(k[p] - d[p], 0.01) / max(lt[p] - d[p], 0.01) for p in ("p50", "p99")}
                print(f"  {mode:<6} {clients:>2} clients: p50 {ratio['p50']:5.2f}  p99 {ratio['p99']:5.2f}  "
                      f"throughput {k['rps'] / lt['rps']:5.2f}×")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--compare-litellm", action="store_true")
    parser.add_argument("--server", choices=("granian", "uvicorn"), default="granian")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--django-views", action="store_true",
                        help="also measure /v1 served through Django's URLconf and middleware (PROXY_RAW_ASGI=0)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the number of requests per run")
    parser.add_argument("--escalation", type=int, default=0, choices=range(0, 11), metavar="LEVEL",
                        help="the bench tenant's smart-Auto dial, 0 (Off, the default) to 10: every `auto` "
                             "request is then scored (the bench prompt stays on Auto at every level)")
    args = parser.parse_args()

    key = bench_key(args.escalation)
    fake, fake_url = start_fake_provider()
    procs = [fake]
    try:
        kiwi, kiwi_url, kiwi_cmd = start_kiwiclaw(fake_url, server=args.server, workers=args.workers, raw_asgi=True)
        procs.append(kiwi)
        auth = {"Authorization": f"Bearer {key}"}

        def openai_body(model):
            return lambda stream: {"model": model, "messages": PROMPT, "stream": stream,
                                   **({"stream_options": {"include_usage": True}} if stream else {})}

        targets = {"direct": (fake_url, "/v1/chat/completions", openai_body("kimi-k2.5"),
                              {"Authorization": "Bearer fake-moonshot-key"}),
                   "kiwiclaw": (kiwi_url, "/v1/chat/completions", openai_body("auto"), auth)}
        settings = {"direct": f"fake provider {fake_url} (uvicorn, zero latency, 12 tokens)",
                    "kiwiclaw": f"{kiwi_cmd} (smart-Auto dial {args.escalation or 'Off'})"}
        if args.django_views:
            dj, dj_url, dj_cmd = start_kiwiclaw(fake_url, server=args.server, workers=args.workers, raw_asgi=False)
            procs.append(dj)
            targets["django"] = (dj_url, "/v1/chat/completions", openai_body("auto"), auth)
            settings["django"] = dj_cmd + " with PROXY_RAW_ASGI=0"
        if args.compare_litellm:
            lt, lt_url, lt_cmd = start_litellm(fake_url, args.workers)
            procs.append(lt)
            targets["litellm"] = (lt_url, "/v1/chat/completions", openai_body("auto"),
                                  {"Authorization": f"Bearer {LITELLM_MASTER_KEY}"})
            settings["litellm"] = lt_cmd
        before = usage_rows()
        results = asyncio.run(measure(targets, scale=args.scale))
        report(results, settings)
        served = sum(r["n"] for mode in results["kiwiclaw"].values() for r in mode.values())
        print(f"\nusage rows written by the bench tenant during the run: {usage_rows(settle=True) - before} "
              f"(measured proxied requests: {served}, plus warm-ups)")
        print(f"machine: {os.cpu_count()} cores; load generator in this process")
    finally:
        for proc in reversed(procs):
            stop(proc)


if __name__ == "__main__":
    main()
