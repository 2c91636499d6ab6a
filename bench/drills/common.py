"""What the fault drills (bench/drills/*.py) share: the servers (stack.py) and the load and figures (load.py).

A drill starts Postgres/Redis access (`Backing`), migrates a database of its own, starts the stack (`Stack`: the
fake provider, the web app served as docs/operations.md says, a Celery worker and beat), drives load (`Load`:
chat turns through the web app and /v1 calls, every outcome recorded), does its damage, then prints figures
(`tally`, `print_figures`). Nothing here passes or fails: a drill prints what happened.

This module is the drills' stable interface; the names below are what they import.
"""

from load import (  # noqa: F401
    Fixture,
    Load,
    Outcome,
    _pg,
    api_call,
    chat_turn,
    make_fixture,
    page,
    print_figures,
    tally,
    wait_back,
    wait_turns_finished,
)
from stack import ROOT, Backing, Stack, arg_parser, log, wait_until  # noqa: F401
