"""The app layers of docs/architecture.md hold, and the shared clients have one home.

- import-linter's layers contract (pyproject.toml, [tool.importlinter]): infra < tenants < billing <
  routing | alerts < conversations | proxy < kiwiclaw; no import runs upward, no app imports `kiwiclaw`.
- A Redis client is built only in infra/redis.py: no other production module calls a redis-py constructor
  (`Redis(`, `from_url(`, a `ConnectionPool`). Tools outside the production package (scripts/, bench/, tests/)
  are not looked at.
"""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
REDIS_CONSTRUCTOR = re.compile(r"\b(?:Strict)?Redis\(|\bfrom_url\(|\ba?redis\.(?:Blocking)?ConnectionPool\b")


def production_modules() -> list[Path]:
    roots = [ROOT / name.rstrip("*") for name in PACKAGES]
    return sorted(path for root in roots for path in root.rglob("*.py") if "migrations" not in path.parts)


def test_no_import_runs_upward():
    result = subprocess.run([str(Path(sys.executable).with_name("lint-imports")), "--no-cache"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def test_redis_clients_are_built_in_infra_redis_only():
    modules = production_modules()
    assert ROOT / "infra" / "redis.py" in modules and len(modules) > 100  # the scan sees the whole tree
    builders = {str(path.relative_to(ROOT)) for path in modules if REDIS_CONSTRUCTOR.search(path.read_text())}
    assert builders == {"infra/redis.py"}


def test_the_redis_pattern_sees_a_client_being_built():
    """The scan above would find each of these (so its passing means something)."""
    for line in ("client = redis.Redis(host='x')", "r = Redis.from_url(url)", "aredis.Redis(connection_pool=p)",
                 "pool = aredis.BlockingConnectionPool(max_connections=4)", "redis.from_url(settings.REDIS_URL)"):
        assert REDIS_CONSTRUCTOR.search(line), line
