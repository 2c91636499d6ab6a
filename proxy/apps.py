from django.apps import AppConfig


class ProxyConfig(AppConfig):
    """The OpenAI/Anthropic-compatible HTTP face (`/v1`) and the dashboard's REST API auth, above routing."""

    name = "proxy"

    def ready(self):
        # The proxy's key-cache invalidation receivers must be connected in every process that can revoke a
        # key or suspend a tenant (web, workers, management commands), not only in those that load the URLs.
        from . import auth  # noqa: F401
