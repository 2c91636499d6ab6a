"""Process helpers shared by the served benches (proxy_latency, chat_latency): free ports, the serving command
of docs/operations.md, waiting for a server with a deadline, and stopping a child."""

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_command(server: str, port: int, workers: int) -> list[str]:
    """The serving command of docs/operations.md (granian), or uvicorn with uvloop and httptools."""
    if server == "granian":
        return [str(Path(sys.executable).parent / "granian"), "--interface", "asginl", "--loop", "uvloop",
                "--workers", str(workers), "--host", "127.0.0.1", "--port", str(port), "--no-ws",
                "kiwiclaw.asgi:application"]
    return [sys.executable, "-m", "uvicorn", "kiwiclaw.asgi:application", "--host", "127.0.0.1", "--port",
            str(port), "--workers", str(workers), "--loop", "uvloop", "--http", "httptools", "--lifespan", "off",
            "--no-access-log"]


def wait_http(url: str, path: str, timeout: float = 60.0, proc=None) -> None:
    """Poll `url + path` until it answers anything, within `timeout`; fail at once if `proc` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"server exited early ({url})")
        try:
            httpx.get(url + path, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not come up within {timeout:.0f} s")


def start_fake_provider(env=None, args=()):
    """The fake provider on a port of its choosing, read back from its first line."""
    proc = subprocess.Popen([sys.executable, "-m", "devtools.fake_provider", "--port", "0", *args], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line.startswith("FAKE_PROVIDER_URL "):
        raise SystemExit(f"fake provider did not start: {line!r}")
    return proc, line.split(" ", 1)[1].strip()


def start(cmd, env, pattern):
    """Start `cmd` and wait (60 s at most) for an output line matching `pattern`; returns (proc, group 1)."""
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
    log = open(out / f"{name}.log", "w")  # noqa: SIM115 (closed with the process)

    def pump():
        for line in proc.stdout:
            log.write(line)
        log.close()

    threading.Thread(target=pump, daemon=True).start()


def stop(proc) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
