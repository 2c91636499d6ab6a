import functools
import os

from celery import Celery
from celery.worker.consumer import Consumer as CeleryConsumer

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kiwiclaw.settings")

app = Celery("kiwiclaw")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


class Consumer(CeleryConsumer):
    """Celery's consumer, reconnecting to a broker that went away every second rather than after 2, 4, 6, 8 ...
    seconds (kombu's defaults, which Celery does not expose): after a Redis restart the worker takes turns again
    within about a second of Redis's return, however long it was down (settings.CELERY_WORKER_CONSUMER)."""

    def ensure_connected(self, conn):
        conn.ensure_connection = functools.partial(conn.ensure_connection, interval_start=0.5, interval_step=0.5,
                                                   interval_max=1.0)
        return super().ensure_connected(conn)
