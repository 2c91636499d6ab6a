"""The ground floor, below every app: shared clients and the ASGI helpers.

It imports Django's settings and libraries, never an app (`tenants`, `billing`, `routing`, `conversations`,
`proxy`) nor the project package (`kiwiclaw`), so every layer may use it.

- `infra.asgi`: helpers for the raw ASGI entries that run ahead of Django.
- `infra.cache`: Django's Redis cache backend with one client per process.
"""
