"""docker-compose.yml, checked without a Docker engine: the services, their commands, and the environment the
app reads. Anchors and merge keys are resolved by the YAML loader, as Compose does."""

import re
from urllib.parse import urlsplit

import pytest
import yaml

from scripts.services import CELERY_BEAT, CELERY_WORKER
from tests.ops.conftest import BASE_DIR

APP_SERVICES = ("web", "worker", "beat")
REQUIRED_ENV = (
    "DATABASE_URL", "REDIS_URL", "DJANGO_SECRET_KEY", "DJANGO_DEBUG", "DJANGO_ALLOWED_HOSTS",
    "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "MOONSHOT_API_KEY", "MOONSHOT_BASE_URL",
)


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((BASE_DIR / "docker-compose.yml").read_text())


def _settings_variables():
    """The environment variables kiwiclaw/settings.py reads (env.str("NAME", ...), env.db_url("NAME"), ...)."""
    source = (BASE_DIR / "kiwiclaw" / "settings.py").read_text()
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
    unknown = set(compose["services"][name]["environment"]) - _settings_variables()
    assert not unknown, f"{name} sets variables kiwiclaw/settings.py never reads: {sorted(unknown)}"


def test_commands_run_asgi_web_and_the_same_celery_processes_as_make_dev(compose):
    services = compose["services"]
    web = services["web"]["command"]
    assert web[:2] == ["uvicorn", "kiwiclaw.asgi:application"]
    assert "uvloop" in web and "httptools" in web
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
