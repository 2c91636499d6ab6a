"""docker-compose.yml, checked without a Docker engine: the services, their commands, and the environment the
app reads. Anchors and merge keys are resolved by the YAML loader, as Compose does."""

import json
import re
import shlex
from urllib.parse import urlsplit

import pytest
import yaml

from scripts.services import CELERY_BEAT, CELERY_WORKER, PRODUCTION_WEB_SERVER
from tests.ops.conftest import BASE_DIR

APP_SERVICES = ("web", "worker", "beat")
REQUIRED_ENV = (
    "DATABASE_URL", "REDIS_URL", "DJANGO_SECRET_KEY", "DJANGO_DEBUG", "DJANGO_ALLOWED_HOSTS",
    "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "MOONSHOT_API_KEY", "MOONSHOT_BASE_URL",
)


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((BASE_DIR / "docker-compose.yml").read_text())


# Read by a library itself rather than by the settings modules (kiwiclaw/settings*.py).
LIBRARY_VARIABLES = {"PROMETHEUS_MULTIPROC_DIR"}  # prometheus-client (kiwiclaw/metrics.py)


def _settings_variables():
    """The environment variables the settings modules read (env.str("NAME", ...), env.db_url("NAME"), ...)."""
    source = "".join(path.read_text() for path in (BASE_DIR / "kiwiclaw").glob("settings*.py"))
    return set(re.findall(r'env(?:\.\w+)?\(\s*"([A-Z][A-Z0-9_]*)"', source))


def test_compose_has_the_production_services(compose):
    assert {"postgres", "redis", "web", "worker", "beat"} <= set(compose["services"])


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_services_get_every_setting_they_need(compose, name):
    env = compose["services"][name]["environment"]
    missing = [var for var in REQUIRED_ENV if var not in env]
    assert not missing, f"{name} lacks {missing}"
    assert urlsplit(env["DATABASE_URL"]).hostname == "postgres"
    assert urlsplit(env["REDIS_URL"]).hostname == "redis"
    assert env["DJANGO_DEBUG"] in ("0", "false", "False")
    # No default secret: compose refuses to start without one (${VAR:?message}).
    assert env["DJANGO_SECRET_KEY"].startswith("${DJANGO_SECRET_KEY:?")


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_services_set_only_variables_the_settings_read(compose, name):
    unknown = set(compose["services"][name]["environment"]) - _settings_variables() - LIBRARY_VARIABLES
    assert not unknown, f"{name} sets variables kiwiclaw/settings.py never reads: {sorted(unknown)}"


def dockerfile_command() -> list[str]:
    """The Dockerfile's CMD (exec form)."""
    match = re.search(r"^CMD (\[.*\])$", (BASE_DIR / "Dockerfile").read_text(), re.M)
    assert match, "the Dockerfile has no exec-form CMD"
    return json.loads(match.group(1))


def documented_command() -> list[str]:
    """The granian command in docs/operations.md's serving section (an indented block, lines joined by \\)."""
    docs = (BASE_DIR / "docs" / "operations.md").read_text()
    match = re.search(r"^    (granian .*?)\n\n", docs, re.M | re.S)
    assert match, "docs/operations.md shows no granian command"
    return shlex.split(match.group(1).replace("\\\n", " "))


def test_the_image_compose_and_the_docs_serve_with_one_command(compose):
    assert dockerfile_command() == PRODUCTION_WEB_SERVER
    assert compose["services"]["web"]["command"] == PRODUCTION_WEB_SERVER
    assert documented_command() == PRODUCTION_WEB_SERVER


def test_the_serving_command_is_granian_serving_the_collected_static_files():
    command = PRODUCTION_WEB_SERVER
    assert command[0] == "granian" and command[-1] == "kiwiclaw.asgi:application"
    flags = dict(zip(command[1:-1], command[2:-1], strict=False))  # each flag with the word after it
    assert flags["--interface"] == "asginl" and flags["--loop"] == "uvloop"
    assert flags["--static-path-route"] == "/static"
    # The image's STATIC_ROOT: BASE_DIR is /app there (WORKDIR), and collectstatic runs at build.
    assert flags["--static-path-mount"] == "/app/var/staticfiles"
    dockerfile = (BASE_DIR / "Dockerfile").read_text()
    assert re.search(r"^WORKDIR /app$", dockerfile, re.M) and "manage.py collectstatic --noinput" in dockerfile


def test_commands_run_the_same_celery_processes_as_make_dev(compose):
    services = compose["services"]
    assert services["worker"]["command"] == CELERY_WORKER
    assert services["beat"]["command"][: len(CELERY_BEAT)] == CELERY_BEAT


def test_app_services_start_after_migrations_and_healthy_servers(compose):
    services = compose["services"]

    def needs(name):
        deps = services[name].get("depends_on", {})
        found = set(deps)
        for dep in deps:
            found |= needs(dep)
        return found

    assert services["migrate"]["command"] == ["python", "manage.py", "migrate", "--noinput"]
    for name in APP_SERVICES:
        assert {"migrate", "postgres", "redis"} <= needs(name), name
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_app_services_run_the_image_built_from_the_dockerfile(compose):
    dockerfile = (BASE_DIR / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.12", dockerfile, re.M)
    for name in (*APP_SERVICES, "migrate"):
        assert compose["services"][name]["build"] == "."
