"""The heartbeat sweeper: ends or requeues turns whose worker died, and re-sends turns whose task was lost.

Run by Celery beat (`tasks.sweep_stale_turns`, every ~30 s). It crosses tenants by design. A running turn
refreshes its heartbeat (`streams.heartbeat_key`) while it streams; the sweeper judges only turns that started
more than CHAT_HEARTBEAT_TTL ago, so a turn just claimed (its heartbeat not yet written) is never taken for dead.
Each of its writes is a lifecycle write (`conversations.lifecycle`) that re-checks the run still owns the turn.
"""

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from routing import metering

from . import streams
from .lifecycle import enqueue, turn_end_queued, turn_fail_partial, turn_request, turn_requeue
from .models import Message
from .selectors import turns_unfinished_all_tenants


def turn_sweep_stale() -> dict:
    """End or requeue turns whose worker died (no heartbeat); returns how many of each.

    - streaming, deltas already published → failed with the partial text, its tokens billed (estimated) under
      the turn's usage key, so a late finish by a zombie worker cannot bill again;
    - streaming, nothing published yet → queued again and re-enqueued (failed after CHAT_MAX_RUNS runs);
    - queued and unclaimed for CHAT_QUEUED_RESCUE_AFTER → enqueued again (the task was lost with its worker;
      a duplicate is harmless, only a queued message can be claimed), after its budget is held again.
    """
    now = timezone.now()
    counts = {"failed": 0, "requeued": 0, "rescued": 0}
    stale = turns_unfinished_all_tenants().filter(
        status=Message.STATUS_STREAMING, started_at__lt=now - timedelta(seconds=settings.CHAT_HEARTBEAT_TTL)
    )
    for message in stale:
        if streams.heartbeat_alive(message.pk):
            continue
        text, deltas = streams.stream_text(message.pk)
        if deltas:
            counts["failed"] += turn_fail_partial(message=message, text=text)
        else:
            counts["requeued"] += turn_requeue(message=message)
    waiting = turns_unfinished_all_tenants().filter(
        status=Message.STATUS_QUEUED, created_at__lt=now - timedelta(seconds=settings.CHAT_QUEUED_RESCUE_AFTER)
    )
    for message in waiting:
        if streams.rescue_claim(message.pk, settings.CHAT_QUEUED_RESCUE_AFTER) and _reserve_again(message):
            enqueue(message.pk)
            counts["rescued"] += 1
    return counts


def _reserve_again(message: Message) -> bool:
    """Before a waiting turn is enqueued again: hold its budget again (the same key replaces the hold, which
    also covers a send whose process died between its insert and its hold). A refused hold fails the turn,
    unbilled, with the reason."""
    try:
        metering.hold(tenant=message.tenant, key=message.usage_key, tier=message.tier,
                      request=turn_request(message=message))
    except metering.HOLD_REFUSALS as exc:
        turn_end_queued(message=message, status=Message.STATUS_FAILED, error=str(exc))
        return False
    return True
