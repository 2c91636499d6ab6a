from django.apps import AppConfig


class AlertsConfig(AppConfig):
    name = "alerts"
    verbose_name = "Budget alerts"

    def ready(self):
        from billing.budget import budget_watch_register

        from . import receivers  # noqa: F401 (marks reset when a plan, tenant or threshold changes)
        from .tasks import enqueue_check

        budget_watch_register(enqueue_check)
