"""The heartbeat sweeper: ends or requeues turns whose worker died, and re-sends turns whose task was lost.

Run by Celery beat (`tasks.sweep_stale_turns`, every ~30 s). It crosses tenants by design. A running turn
refreshes its heartbeat (`streams.heartbeat_key`) while it streams; the sweeper judges only turns that started
more than CHAT_HEARTBEAT_TTL ago, so a turn just claimed (its heartbeat not yet written) is never taken for dead.
Each of its writes is a lifecycle write (`conversations.lifecycle`) that re-checks the run still owns the turn.

Two things a missing heartbeat does not prove, and how the sweep tells:
- the turn's answer ended but the database could not take its end: the end waits in the outbox. The sweep drains
  the outbox first (the turn then ends `done` with its real counts), and leaves alone any turn whose end is still
  waiting there (`billing.outbox.pending`) — it is never failed with an estimate.
- Redis restarted a moment ago, losing every heartbeat (and the stream): running turns write theirs again within
  a retry, so while Redis has been up for less than a heartbeat TTL no streaming turn is judged. A restart also
  lost the broker's queue, so queued turns older than the restart are re-sent at once rather than after
  CHAT_QUEUED_RESCUE_AFTER.
"""

import datetime
import logging
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from billing import outbox
from routing import metering

from . import streams
from .lifecycle import enqueue, turn_end_queued, turn_fail_partial, turn_request, turn_requeue
from .models import Message
from .selectors import turns_unfinished_all_tenants

logger = logging.getLogger(__name__)


def turn_sweep_stale() -> dict:
    """End or requeue turns whose worker died (no heartbeat); returns how many of each.

    - streaming, deltas already published → failed with the partial text, its tokens billed (estimated) under
      the turn's usage key, so a late finish by a zombie worker cannot bill again;
    - streaming, nothing published yet → queued again and re-enqueued (failed after CHAT_MAX_RUNS runs);
    - queued and unclaimed for CHAT_QUEUED_RESCUE_AFTER → enqueued again (the task was lost with its worker;
      a duplicate is harmless, only a queued message can be claimed), after its budget is held again.
    """
    counts = {"failed": 0, "requeued": 0, "rescued": 0}
    try:
        outbox.drain()  # ended turns waiting for the database end now, as `done`, before anything is judged
    except Exception:  # noqa: BLE001 - the sweep still runs; pending() below protects what is left
        logger.exception("sweeper: outbox drain failed")
    now = timezone.now()
    redis_since = datetime.datetime.fromtimestamp(streams.redis_started_at(), tz=datetime.UTC)
    heartbeats_trusted = now - redis_since > timedelta(seconds=settings.CHAT_HEARTBEAT_TTL)
    stale = turns_unfinished_all_tenants().filter(
        status=Message.STATUS_STREAMING, started_at__lt=now - timedelta(seconds=settings.CHAT_HEARTBEAT_TTL)
    ) if heartbeats_trusted else ()
    for message in stale:
        if streams.heartbeat_alive(message.pk) or outbox.pending(message.usage_key):
            continue
        text, deltas = streams.stream_text(message.pk)
        if deltas:
            counts["failed"] += turn_fail_partial(message=message, text=text)
        else:
            counts["requeued"] += turn_requeue(message=message)
    rescue_before = max(now - timedelta(seconds=settings.CHAT_QUEUED_RESCUE_AFTER), redis_since)
    waiting = turns_unfinished_all_tenants().filter(status=Message.STATUS_QUEUED, created_at__lt=rescue_before)
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
                      user_id=message.conversation.owner_id, request=turn_request(message=message))
    except metering.HOLD_REFUSALS as exc:
        turn_end_queued(message=message, status=Message.STATUS_FAILED, error=str(exc))
        return False
    return True
