"""GET /healthz: 200 when Postgres and Redis both answer, 503 naming the one that does not."""

from django.db import connection
from django.http import JsonResponse

from infra.redis import redis_sync


def _check_database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means the database is not answering
        return f"error: {type(exc).__name__}"


def _check_redis() -> str:
    try:
        redis_sync().ping()
        return "ok"
    except Exception as exc:  # noqa: BLE001
        return f"error: {type(exc).__name__}"


def healthz(request):
    checks = {"database": _check_database(), "redis": _check_redis()}
    failing = [name for name, state in checks.items() if state != "ok"]
    body = {"status": "ok" if not failing else "unavailable", "checks": checks}
    if failing:
        body["failing"] = failing
    return JsonResponse(body, status=503 if failing else 200)
