"""`python -m scripts.services run-tests -- CMD`: embedded servers only when the URLs are unset, the URLs and a
test secret exported to CMD, CMD's exit code returned, and nothing left running afterwards."""

import json
import sys
from urllib.parse import urlsplit

import pytest

from tests.ops.conftest import run

# Connects to both servers it is given, writes what it saw, and exits with an unusual code.
PROBE = """
import json, os, sys, psycopg, redis
seen = {k: os.environ.get(k) for k in ("DATABASE_URL", "REDIS_URL", "DJANGO_SECRET_KEY")}
with psycopg.connect(seen["DATABASE_URL"], connect_timeout=3) as conn:
    seen["database"] = conn.execute("SELECT current_database()").fetchone()[0]
seen["redis"] = redis.Redis.from_url(seen["REDIS_URL"], socket_connect_timeout=3).ping()
open(sys.argv[1], "w").write(json.dumps(seen))
sys.exit(7)
"""


def _run_tests(tmp_path, env, *cmd):
    argv = [sys.executable, "-m", "scripts.services", "run-tests", "--var-dir", str(tmp_path / "var"), "--", *cmd]
    return run(argv, env=env)


@pytest.mark.slow
def test_run_tests_starts_embedded_servers_exports_urls_and_returns_the_exit_code(tmp_path, marked):
    seen_path = tmp_path / "seen.json"
    result = _run_tests(tmp_path, marked.env, sys.executable, "-c", PROBE, str(seen_path))

    assert result.returncode == 7, result.stdout + result.stderr
    seen = json.loads(seen_path.read_text())
    database, redis_url = urlsplit(seen["DATABASE_URL"]), urlsplit(seen["REDIS_URL"])
    assert (database.hostname, redis_url.hostname) == ("127.0.0.1", "127.0.0.1")
    assert database.port != 5432 and redis_url.port != 6379  # never the machine's own services
    assert seen["database"] == "kiwiclaw"
    assert seen["redis"] is True
    assert seen["DJANGO_SECRET_KEY"]
    assert marked.left() == []
    # The servers' own logs go to a file, not into the test output.
    assert "database system is ready" in (tmp_path / "var" / "services.log").read_text()


def test_run_tests_uses_the_given_urls_and_starts_nothing(tmp_path, marked):
    from django.conf import settings

    env = dict(marked.env, DATABASE_URL=_url_of_test_settings(settings), REDIS_URL=settings.REDIS_URL)
    seen_path = tmp_path / "seen.json"
    result = _run_tests(tmp_path, env, sys.executable, "-c", PROBE, str(seen_path))

    assert result.returncode == 7, result.stdout + result.stderr
    seen = json.loads(seen_path.read_text())
    assert (seen["DATABASE_URL"], seen["REDIS_URL"]) == (env["DATABASE_URL"], env["REDIS_URL"])
    assert not (tmp_path / "var" / "pgdata").exists()
    assert not (tmp_path / "var" / "redis").exists()
    assert "using DATABASE_URL" in result.stdout and "using REDIS_URL" in result.stdout


def test_run_tests_without_a_command_is_an_error(tmp_path, marked):
    result = _run_tests(tmp_path, marked.env)
    assert result.returncode == 2
    assert "needs a command" in result.stderr
    assert not (tmp_path / "var" / "pgdata").exists()


def _url_of_test_settings(settings):
    db = settings.DATABASES["default"]
    # The maintenance database: it always exists, unlike the one the settings name before tests create it.
    return f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/postgres"
