"""Development tools, not part of the production package or image: the fake LLM provider."""
