"""The project's ASGI app plus static files, for the browser tests' uvicorn (production serves static files
from the web server or a CDN in front; the tests have neither)."""

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

from kiwiclaw.asgi import application as project_application

application = ASGIStaticFilesHandler(project_application)
