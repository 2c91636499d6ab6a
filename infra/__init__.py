"""The ground floor, below every app: the shared network clients and the ASGI helpers.

It imports Django's settings and libraries, never an app (`tenants`, `billing`, `routing`, `conversations`,
`proxy`) nor the project package (`kiwiclaw`), so every layer may use it.

- `infra.redis`: the one sync Redis client per process, one async client per event loop, and `Script`, the Lua
  script runner (EVALSHA, the source sent once when the server does not know it).
- `infra.http`: the provider HTTP client, one per event loop (httpx's API on aiohttp's transport).
- `infra.asgi`: helpers for the raw ASGI entries that run ahead of Django.
- `infra.cache`: Django's Redis cache backend with one client per process.
"""
