"""Measure the smart router on routing-eval's validation split: APGR, CPT, the curve, and the dial's levels.

    manage.py routing_eval [--data PATH] [--output-tokens N]

Cost per level is priced at the catalog's Kimi K2.5 (the cheap model) and Claude Opus 4.6 (the strong one),
for a request of the data's average prompt (tokens estimated as ceil(chars / 4)) and an assumed answer of
--output-tokens tokens (default 400; the data holds no answers). When the catalog cannot be read (no database,
no migrations) the published prices are used, and the output says so.
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal

from django.core.management.base import BaseCommand, CommandError

from routing.smart import dataset, router
from routing.smart.metrics import operating_point, pgr, router_metrics

CHEAP_SLUG = "kimi-k2.5"
STRONG_SLUG = "claude-opus-4-6"
# USD per million tokens (input, output), as published; used only when the catalog cannot be read.
PUBLISHED_PRICES = {CHEAP_SLUG: (Decimal("0.60"), Decimal("3.00")), STRONG_SLUG: (Decimal("5"), Decimal("25"))}
MILLION = Decimal(1_000_000)


def usd(amount: Decimal) -> Decimal:
    """The one rounding rule of this report: USD to 4 decimals, half up."""
    return amount.quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)


class Command(BaseCommand):
    help = "Evaluate the smart router on the routing-eval validation split (APGR, CPT, dial levels, cost)."

    def add_arguments(self, parser):
        parser.add_argument("--data", default=None, help="mmlu.jsonl.gz (default: settings.ROUTING_EVAL_DATA)")
        parser.add_argument("--output-tokens", type=int, default=400,
                            help="assumed answer length in tokens, for the cost figures (default 400)")

    def handle(self, *args, data, output_tokens, **options):
        try:
            rows = dataset.load_rows(data, split="validation")
        except dataset.DatasetMissing as exc:
            raise CommandError(str(exc)) from exc
        if not rows:
            raise CommandError("the data file has no validation rows")
        scorer = router()
        scores = [scorer.score_text(r.prompt) for r in rows]
        weak = [r.weak_correct for r in rows]
        strong = [r.strong_correct for r in rows]
        m = router_metrics(scores, weak, strong)
        out = self.stdout.write

        out(f"smart router {scorer.version} on the validation split ({len(rows)} prompts)")
        out(f"APGR {m.apgr:.4f}   CPT(50%) {m.cpt50:.1%}   CPT(80%) {m.cpt80:.1%}   (random: 0.50, 50%, 80%)")
        out(f"always cheap: quality {m.quality_weak:.4f}   always strong: quality {m.quality_strong:.4f}")
        out("\nstrong-call share against quality, at the 10-quantile operating points:")
        out("  share   quality  PGR     random router quality")
        for share, quality, gain in m.points:
            random_quality = m.quality_weak + share * (m.quality_strong - m.quality_weak)
            out(f"  {share:6.1%}  {quality:.4f}   {gain:6.3f}  {random_quality:.4f}")

        prices, source = _prices()
        prompt_tokens = Decimal(sum(math.ceil(len(r.prompt) / 4) for r in rows)) / Decimal(len(rows))
        answer_tokens = Decimal(output_tokens)
        cheap = _request_cost(prices[CHEAP_SLUG], prompt_tokens, answer_tokens)
        strong_cost = _request_cost(prices[STRONG_SLUG], prompt_tokens, answer_tokens)
        out(f"\ncost per 1,000 requests: prices from {source}; average prompt {prompt_tokens:.1f} tokens "
            f"(ceil(chars/4)), assumed answer {output_tokens} tokens")
        out(f"  always {CHEAP_SLUG}: ${usd(cheap * 1000)}   always {STRONG_SLUG}: ${usd(strong_cost * 1000)}")
        out("\ndial levels (validation split):")
        out("  level  target  threshold  share   quality  PGR     $/1k req  saved vs all-strong")
        for level in scorer.levels:
            share, quality = operating_point(scores, weak, strong, level["threshold"])
            gain = pgr(quality, m.quality_weak, m.quality_strong)
            share_d = Decimal(str(round(share, 6)))
            cost = (share_d * strong_cost + (1 - share_d) * cheap) * 1000
            saved = (1 - cost / (strong_cost * 1000)) * 100
            out(f"  {level['level']:>5}  {level['target_share']:>6.0%}  {level['threshold']:.5f}    {share:6.1%}  "
                f"{quality:.4f}   {gain:6.3f}  ${usd(cost):>8}  {saved.quantize(Decimal('0.1'))}%")


def _request_cost(prices: tuple[Decimal, Decimal], prompt_tokens: Decimal, answer_tokens: Decimal) -> Decimal:
    price_in, price_out = prices
    return (prompt_tokens * price_in + answer_tokens * price_out) / MILLION


def _prices() -> tuple[dict[str, tuple[Decimal, Decimal]], str]:
    """(input, output) USD per million tokens for both models, and where they came from."""
    from django.db import DatabaseError

    from routing.catalog import catalog_get

    try:
        endpoints = catalog_get().endpoints
        found = {slug: (endpoints[slug].prices.input, endpoints[slug].prices.output) for slug in PUBLISHED_PRICES}
    except DatabaseError as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return PUBLISHED_PRICES, f"the published price lists (the catalog could not be read: {reason})"
    except KeyError as exc:
        return PUBLISHED_PRICES, f"the published price lists (the catalog has no endpoint {exc})"
    return found, "the catalog"
