"""Writes to the model catalog. Every change writes one audit row in the same transaction (price changes get
their own action, `catalog.price_change`, so finance can find them) and drops this process's catalog cache.
Price changes never touch usage already recorded: each usage row keeps the unit prices it was priced at."""

from django.db import transaction

from tenants.services import audit_record

from .catalog import catalog_invalidate
from .models import ModelEndpoint, ProviderConfig, TierChainEntry

_ENDPOINT_FIELDS = ("slug", "upstream_model", "provider_id", "context_window", "enabled", "vision",
                   *ModelEndpoint.PRICE_FIELDS)
_PROVIDER_FIELDS = ("slug", "name", "kind", "base_url_setting", "api_key_setting")
_ENTRY_FIELDS = ("tier", "position", "endpoint_id")


def _snapshot(obj, fields) -> dict:
    return {f: str(getattr(obj, f)) if getattr(obj, f) is not None else None for f in fields}


def _save_audited(*, obj, fields, actor, kind: str, price_fields=()) -> None:
    before_obj = type(obj).objects.select_for_update().filter(pk=obj.pk).first() if obj.pk else None
    obj.full_clean()
    obj.save()
    after = _snapshot(obj, fields)
    if before_obj is None:
        audit_record(actor=actor, action=f"catalog.{kind}_create", target=obj, after=after)
    else:
        before = _snapshot(before_obj, fields)
        changed = [f for f in fields if before[f] != after[f]]
        if not changed:
            return
        price_change = bool(changed) and all(f in price_fields for f in changed)
        action = f"catalog.{'price_change' if price_change else kind + '_update'}"
        audit_record(actor=actor, action=action, target=obj, before={f: before[f] for f in changed},
                     after={f: after[f] for f in changed})
    transaction.on_commit(catalog_invalidate)


@transaction.atomic
def model_endpoint_save(*, endpoint: ModelEndpoint, actor) -> ModelEndpoint:
    """Create or update an endpoint (validated); audited as catalog.endpoint_create/_update or price_change."""
    _save_audited(obj=endpoint, fields=_ENDPOINT_FIELDS, actor=actor, kind="endpoint",
                  price_fields=ModelEndpoint.PRICE_FIELDS)
    return endpoint


@transaction.atomic
def provider_config_save(*, provider: ProviderConfig, actor) -> ProviderConfig:
    _save_audited(obj=provider, fields=_PROVIDER_FIELDS, actor=actor, kind="provider")
    return provider


@transaction.atomic
def tier_chain_entry_save(*, entry: TierChainEntry, actor) -> TierChainEntry:
    _save_audited(obj=entry, fields=_ENTRY_FIELDS, actor=actor, kind="chain")
    return entry


@transaction.atomic
def catalog_delete(*, obj, actor) -> None:
    """Delete a provider, endpoint or chain entry (PROTECT refuses one still in use)."""
    fields = {ModelEndpoint: _ENDPOINT_FIELDS, ProviderConfig: _PROVIDER_FIELDS, TierChainEntry: _ENTRY_FIELDS}
    kind = {ModelEndpoint: "endpoint", ProviderConfig: "provider", TierChainEntry: "chain"}[type(obj)]
    audit_record(actor=actor, action=f"catalog.{kind}_delete", target=obj, before=_snapshot(obj, fields[type(obj)]))
    obj.delete()
    transaction.on_commit(catalog_invalidate)
