"""Chat (conversations/) settings, read from the environment like the rest (kiwiclaw/settings.py imports them)."""

import environ

env = environ.Env()

CHAT_SYSTEM_PROMPT = env.str("CHAT_SYSTEM_PROMPT", default="")
# A finished turn's token stream stays replayable this long; afterwards the page reads the database.
CHAT_STREAM_TTL = env.int("CHAT_STREAM_TTL", default=600)
# Backstop expiry of a stream (and a stop flag) whose turn nobody ended.
CHAT_STREAM_MAX_AGE = env.int("CHAT_STREAM_MAX_AGE", default=6 * 3600)
# A running turn refreshes its heartbeat every INTERVAL; the sweeper calls it dead after TTL without one.
CHAT_HEARTBEAT_INTERVAL = env.float("CHAT_HEARTBEAT_INTERVAL", default=5.0)
CHAT_HEARTBEAT_TTL = env.int("CHAT_HEARTBEAT_TTL", default=20)
# A turn requeued this many times (its worker died each time before any text) fails instead.
CHAT_MAX_RUNS = env.int("CHAT_MAX_RUNS", default=3)
# A queued turn nobody claimed for this long is enqueued again (its task was lost with a worker).
CHAT_QUEUED_RESCUE_AFTER = env.int("CHAT_QUEUED_RESCUE_AFTER", default=120)
# How long the token in an SSE URL (made for one session, one message) stays good; a page reload makes a new one.
CHAT_STREAM_TOKEN_MAX_AGE = env.int("CHAT_STREAM_TOKEN_MAX_AGE", default=6 * 3600)
# SSE: how long one Redis read blocks, the idle keep-alive period, and how often an idle stream re-reads the DB.
CHAT_SSE_BLOCK_MS = env.int("CHAT_SSE_BLOCK_MS", default=1000)
CHAT_SSE_HEARTBEAT = env.float("CHAT_SSE_HEARTBEAT", default=15.0)
CHAT_SSE_DB_RECHECK = env.float("CHAT_SSE_DB_RECHECK", default=10.0)
# The web process's one reader of all SSE streams (conversations.streams.StreamHub): its BLOCK, and the pause after
# a read that brought entries, in which the next read's entries gather (later deltas only; the first is direct).
CHAT_SSE_HUB_BLOCK_MS = env.int("CHAT_SSE_HUB_BLOCK_MS", default=100)
CHAT_SSE_HUB_WINDOW = env.float("CHAT_SSE_HUB_WINDOW", default=0.02)
# A turn writes its first delta at once, then at most one stream entry per interval (deltas joined meanwhile):
# a Redis write per token was most of a busy worker's CPU (conversations/streams.py). 0 = a write per delta.
CHAT_STREAM_FLUSH_INTERVAL = env.float("CHAT_STREAM_FLUSH_INTERVAL", default=0.05)

__all__ = [name for name in dir() if name.startswith("CHAT_")]  # only the settings, not the reader
