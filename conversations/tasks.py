"""Celery tasks of the chat. Thin: they take ids and call the turn runner or the sweeper.

The turn's task is acknowledged when it starts, not when it ends (acks_late=False, as is the project's
default). What carries a turn through a dead worker is the database row and the sweeper — a claimed turn without a
heartbeat is requeued or ended, a queued turn nobody claimed is re-sent — not a redelivery of its message, which
the hour-long visibility timeout would hold back anyway. And a message still unacknowledged when the broker
connection drops (a Redis restart with turns streaming) makes kombu 5.7 restore it on a released connection,
which ends the worker's consumer for good ("Unrecoverable error: ... 'NoneType' object has no attribute
'hostname'", bench/drills/redis_restart.py): with the turns acknowledged, the worker reconnects and consumes on.
The beat tasks are acknowledged at start for the same reason: they are idempotent and run again within seconds.
"""

from celery import shared_task

from . import sweeper, turns


@shared_task(acks_late=False, ignore_result=True)
def run_turn(message_id: int) -> None:
    """Run one assistant turn. A redelivery for a message already claimed or finished does nothing."""
    turns.turn_run(message_id=message_id)


@shared_task(acks_late=False, ignore_result=True)
def sweep_stale_turns() -> dict:
    """Beat task: end or requeue turns whose worker stopped beating (see sweeper.turn_sweep_stale)."""
    return sweeper.turn_sweep_stale()
