"""Smart Auto routing: a score per chat turn of how much it needs the strong model (GitHub issue #11).

`router().score_request(request)` gives the score; a tenant's dial level 1..10 escalates the turns scoring at
or above `router().threshold(level)`, which sent `expected_share(level)` (5% per level) of the validation
prompts to the strong model. Train with `python -m scripts.train_router`; measure with
`manage.py routing_eval`.
"""

from .scorer import ROUTER_LEVELS, Router, router

__all__ = ["ROUTER_LEVELS", "Router", "router"]
