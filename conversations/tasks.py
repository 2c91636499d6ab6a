"""Celery tasks of the chat. Thin: they take ids and call the turn runner or the sweeper."""

from celery import shared_task

from . import sweeper, turns


@shared_task(acks_late=True, ignore_result=True)
def run_turn(message_id: int) -> None:
    """Run one assistant turn. A redelivery for a message already claimed or finished does nothing."""
    turns.turn_run(message_id=message_id)


@shared_task(ignore_result=True)
def sweep_stale_turns() -> dict:
    """Beat task: end or requeue turns whose worker stopped beating (see sweeper.turn_sweep_stale)."""
    return sweeper.turn_sweep_stale()
