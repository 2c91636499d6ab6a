from django.apps import AppConfig


class RoutingConfig(AppConfig):
    name = "routing"

    def ready(self):
        # The proxy's key-cache invalidation receivers must be connected in every process that can revoke a
        # key or suspend a tenant (web, workers, management commands), not only in those that load the URLs.
        from .proxy import auth  # noqa: F401
