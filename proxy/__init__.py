"""The OpenAI- and Anthropic-compatible proxy API under /v1 (see handler.py for the request flow)."""
