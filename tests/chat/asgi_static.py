"""The project's ASGI app plus static files, for the browser tests' uvicorn (production serves static files
from the web server or a CDN in front; the tests have neither)."""

import django
from django.conf import settings

django.setup()
# The suite stores passwords with the fast MD5 hasher (tests/conftest.py); this server must verify them.
settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher",
                             "django.contrib.auth.hashers.PBKDF2PasswordHasher"]
# Plain static names, served from the source folders below: no collectstatic manifest in a test run.
settings.STORAGES = {**settings.STORAGES, "staticfiles": {
    "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from kiwiclaw.asgi import application as project_application  # noqa: E402

application = ASGIStaticFilesHandler(project_application)
