"""Seed the default catalog: two providers, four endpoints at published prices, and the two tier chains.

Kimi K2.5 has no separate cache-write price (Moonshot caches automatically and bills the first, uncached read
as normal input), so its cache-write price is its input price, 0.60.
"""

from decimal import Decimal as D

from django.db import migrations

PROVIDERS = [
    ("anthropic", "Anthropic", "anthropic", "ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY"),
    ("moonshot", "Moonshot AI", "openai_compatible", "MOONSHOT_BASE_URL", "MOONSHOT_API_KEY"),
]
# slug, upstream id, provider, context window, input, output, cache write, cache read (USD per million tokens)
ENDPOINTS = [
    ("claude-opus-4-6", "claude-opus-4-6", "anthropic", 200_000, D("5"), D("25"), D("6.25"), D("0.50")),
    ("claude-sonnet-4-6", "claude-sonnet-4-6", "anthropic", 200_000, D("3"), D("15"), D("3.75"), D("0.30")),
    ("claude-haiku-4-5", "claude-haiku-4-5", "anthropic", 200_000, D("1"), D("5"), D("1.25"), D("0.10")),
    ("kimi-k2.5", "kimi-k2.5", "moonshot", 262_144, D("0.60"), D("3.00"), D("0.60"), D("0.10")),
]
CHAINS = {
    "max": ["claude-opus-4-6", "claude-sonnet-4-6", "kimi-k2.5"],
    "auto": ["kimi-k2.5", "claude-haiku-4-5"],
}


def seed(apps, schema_editor):
    Provider = apps.get_model("routing", "ProviderConfig")
    Endpoint = apps.get_model("routing", "ModelEndpoint")
    Entry = apps.get_model("routing", "TierChainEntry")
    providers = {}
    for slug, name, kind, url_setting, key_setting in PROVIDERS:
        providers[slug], _ = Provider.objects.get_or_create(
            slug=slug, defaults={"name": name, "kind": kind, "base_url_setting": url_setting,
                                 "api_key_setting": key_setting})
    endpoints = {}
    for slug, upstream, provider, window, p_in, p_out, p_cw, p_cr in ENDPOINTS:
        endpoints[slug], _ = Endpoint.objects.get_or_create(
            slug=slug, defaults={"upstream_model": upstream, "provider": providers[provider],
                                 "context_window": window, "price_input": p_in, "price_output": p_out,
                                 "price_cache_write": p_cw, "price_cache_read": p_cr})
    for tier, slugs in CHAINS.items():
        if Entry.objects.filter(tier=tier).exists():
            continue  # an admin already set this chain
        for position, slug in enumerate(slugs):
            Entry.objects.create(tier=tier, position=position, endpoint=endpoints[slug])


class Migration(migrations.Migration):
    dependencies = [("routing", "0001_catalog")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
