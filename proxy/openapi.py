"""OpenAPI description of the /v1 proxy endpoints, added to drf-spectacular's schema by a postprocessing hook.

The proxy is plain async code (no DRF), so drf-spectacular cannot introspect it; this describes it by hand,
every status of the error table (errors.py) included, so the schema at /api/schema/ covers the whole API.
"""

from .errors import ERROR_TABLE

_STRING_OR_TEXT_PARTS = {
    "oneOf": [
        {"type": "string"},
        {"type": "array", "items": {"type": "object", "required": ["type", "text"],
                                    "properties": {"type": {"type": "string", "enum": ["text"]},
                                                   "text": {"type": "string"}}}},
    ]
}
_NULLABLE_INT = {"type": "integer", "nullable": True}
# proxy/parsing.py's end-user id: an opaque id of printable ASCII without spaces ("" means none).
_END_USER = {"type": "string", "nullable": True, "maxLength": 256, "pattern": "^[\\x21-\\x7e]*$"}
_MONEY = {"type": "number", "description": "USD, exact decimal."}

COMPONENTS = {
    "OpenAIError": {
        "type": "object", "required": ["error"],
        "properties": {"error": {"type": "object", "required": ["message", "type"], "properties": {
            "message": {"type": "string"},
            "type": {"type": "string", "enum": sorted({r.openai_type for r in ERROR_TABLE.values()})},
            "param": {"type": "string", "nullable": True},
            "code": {"type": "string", "nullable": True},
        }}},
    },
    "AnthropicError": {
        "type": "object", "required": ["type", "error"],
        "properties": {
            "type": {"type": "string", "enum": ["error"]},
            "error": {"type": "object", "required": ["type", "message"], "properties": {
                "type": {"type": "string", "enum": sorted({r.anthropic_type for r in ERROR_TABLE.values()})},
                "message": {"type": "string"},
            }},
            "request_id": {"type": "string"},
        },
    },
    "ChatCompletionRequest": {
        "type": "object", "required": ["model", "messages"],
        "description": "OpenAI chat completions. Every field is forwarded, recorded or refused with a 400 "
                       "naming it (n > 1, functions, audio, logprobs, store, service tiers other than "
                       "auto/default...; the table is in docs/contracts.md). Tools, tool_choice, "
                       "parallel_tool_calls, response_format and image_url parts are forwarded to every provider "
                       "(translated for Anthropic).",
        "properties": {
            "model": {"type": "string", "description": "auto, max, kiwiclaw/auto, kiwiclaw/max, or (where "
                                                       "the plan allows) a catalog model from /v1/models."},
            "messages": {"type": "array", "minItems": 1, "items": {
                "type": "object", "required": ["role", "content"],
                "properties": {"role": {"type": "string",
                                        "enum": ["system", "developer", "user", "assistant", "tool"]},
                               "content": _STRING_OR_TEXT_PARTS,
                               "tool_calls": {"type": "array", "items": {"type": "object"}},
                               "tool_call_id": {"type": "string"}}}},
            "tools": {"type": "array", "nullable": True, "items": {"type": "object"},
                      "description": "Function tools; each `parameters` must be a JSON Schema of type object."},
            "tool_choice": {"nullable": True, "oneOf": [{"type": "string", "enum": ["none", "auto", "required"]},
                                                        {"type": "object"}]},
            "parallel_tool_calls": {"type": "boolean", "nullable": True},
            "response_format": {"type": "object", "nullable": True,
                                "description": "text, json_object or json_schema (schema checked against the "
                                               "JSON Schema metaschema)."},
            "max_tokens": _NULLABLE_INT, "max_completion_tokens": _NULLABLE_INT,
            "temperature": {"type": "number", "minimum": 0, "maximum": 2, "nullable": True},
            "top_p": {"type": "number", "minimum": 0, "maximum": 1, "nullable": True},
            "stop": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "maxItems": 4}],
                     "nullable": True},
            "stream": {"type": "boolean", "nullable": True},
            "stream_options": {"type": "object", "nullable": True,
                               "properties": {"include_usage": {"type": "boolean"}}},
            "seed": {"type": "integer", "nullable": True,
                     "description": "Sent to OpenAI-compatible providers (best-effort determinism)."},
            "user": {**_END_USER, "description": "Your end user's opaque id, kept on the usage row (end_user)."},
            "safety_identifier": {**_END_USER, "description": "Same as `user` (if both are sent they must agree)."},
            "metadata": {"type": "object", "nullable": True, "maxProperties": 0,
                         "description": "Only {}: metadata is kept with stored completions, which are not offered."},
        },
    },
    "Usage": {
        "type": "object",
        "properties": {
            "prompt_tokens": {"type": "integer"}, "completion_tokens": {"type": "integer"},
            "total_tokens": {"type": "integer"},
            "prompt_tokens_details": {"type": "object", "properties": {"cached_tokens": {"type": "integer"}}},
            "completion_tokens_estimated": {"type": "boolean"},
            "cost": {**_MONEY, "description": "Provider cost at the answering model's prices, USD."},
            "billed": {**_MONEY, "description": "Billed amount, USD."},
        },
    },
    "ChatCompletion": {
        "type": "object", "required": ["id", "object", "created", "model", "choices"],
        "properties": {
            "id": {"type": "string"}, "object": {"type": "string", "enum": ["chat.completion"]},
            "created": {"type": "integer"},
            "model": {"type": "string", "description": "The upstream model that answered."},
            "choices": {"type": "array", "items": {"type": "object", "properties": {
                "index": {"type": "integer"},
                "message": {"type": "object", "properties": {
                    "role": {"type": "string"}, "content": {"type": "string", "nullable": True},
                    "tool_calls": {"type": "array", "items": {"type": "object", "properties": {
                        "id": {"type": "string"}, "type": {"type": "string", "enum": ["function"]},
                        "function": {"type": "object", "properties": {"name": {"type": "string"},
                                                                      "arguments": {"type": "string"}}}}}}}},
                "finish_reason": {"type": "string", "enum": ["stop", "length", "content_filter", "tool_calls"]},
            }}},
            "usage": {"$ref": "#/components/schemas/Usage"},
        },
    },
    "ModelList": {
        "type": "object", "required": ["object", "data"],
        "properties": {"object": {"type": "string", "enum": ["list"]}, "data": {"type": "array", "items": {
            "type": "object", "required": ["id", "object"],
            "properties": {"id": {"type": "string"}, "object": {"type": "string", "enum": ["model"]},
                           "created": {"type": "integer"}, "owned_by": {"type": "string"}}}}},
    },
    "AnthropicMessagesRequest": {
        "type": "object", "required": ["model", "max_tokens", "messages"],
        "properties": {
            "model": {"type": "string"}, "max_tokens": {"type": "integer", "minimum": 1},
            "system": _STRING_OR_TEXT_PARTS,
            "messages": {"type": "array", "minItems": 1, "items": {
                "type": "object", "required": ["role", "content"],
                "properties": {"role": {"type": "string", "enum": ["user", "assistant"]},
                               "content": {"oneOf": [{"type": "string"}, {"type": "array", "items": {
                                   "type": "object", "description": "text, image, tool_use or tool_result block",
                                   "required": ["type"], "properties": {"type": {"type": "string"}}}}]}}}},
            "tools": {"type": "array", "items": {"type": "object", "required": ["name", "input_schema"]},
                      "description": "Client tools (name, description, input_schema, cache_control)."},
            "tool_choice": {"type": "object", "required": ["type"], "properties": {
                "type": {"type": "string", "enum": ["auto", "any", "tool", "none"]}, "name": {"type": "string"},
                "disable_parallel_tool_use": {"type": "boolean"}}},
            "output_config": {"type": "object", "description": "Only `format` (a json_schema: structured output); "
                                                                "effort is chosen by the tier.",
                              "properties": {"format": {"type": "object", "required": ["type", "schema"], "properties": {
                                  "type": {"type": "string", "enum": ["json_schema"]},
                                  "schema": {"type": "object"}}}}},
            "cache_control": {"type": "object", "nullable": True, "properties": {
                "type": {"type": "string", "enum": ["ephemeral"]}, "ttl": {"type": "string", "enum": ["5m", "1h"]}}},
            "temperature": {"type": "number", "minimum": 0, "maximum": 1},
            "top_p": {"type": "number", "minimum": 0, "maximum": 1},
            "stop_sequences": {"type": "array", "items": {"type": "string"}},
            "stream": {"type": "boolean"},
            "metadata": {"type": "object", "additionalProperties": False, "properties": {
                "user_id": {**_END_USER, "description": "Your end user's opaque id, kept on the usage row."}}},
        },
    },
    "AnthropicMessage": {
        "type": "object", "required": ["id", "type", "role", "model", "content", "stop_reason", "usage"],
        "properties": {
            "id": {"type": "string"}, "type": {"type": "string", "enum": ["message"]},
            "role": {"type": "string", "enum": ["assistant"]}, "model": {"type": "string"},
            "content": {"type": "array", "items": {"type": "object", "properties": {
                "type": {"type": "string"}, "text": {"type": "string"}, "id": {"type": "string"},
                "name": {"type": "string"}, "input": {"type": "object"}}}},
            "stop_reason": {"type": "string", "nullable": True},
            "stop_sequence": {"type": "string", "nullable": True},
            "usage": {"type": "object", "properties": {
                "input_tokens": {"type": "integer"}, "output_tokens": {"type": "integer"},
                "cost": _MONEY, "billed": _MONEY}},
        },
    },
}

_ROUTING_HEADERS = {
    "x-request-id": {"schema": {"type": "string"}, "description": "Our id of this request (usage key api:<id>)."},
    "x-kiwiclaw-tier": {"schema": {"type": "string"},
                        "description": "The tier that answered: auto or max (max for an escalated Auto request)."},
    "x-kiwiclaw-route": {"schema": {"type": "string"},
                         "description": "How the model was chosen: `smart; score=0.82; escalated=1` when smart Auto "
                                        "scored the request, `fixed` otherwise (MAX, a named model, the dial Off)."},
    "x-kiwiclaw-model": {"schema": {"type": "string"}, "description": "Catalog endpoint that answered."},
    "x-kiwiclaw-fallback": {"schema": {"type": "string"},
                            "description": "How many endpoints failed before the one that answered."},
    "x-kiwiclaw-cost": {"schema": {"type": "string"}, "description": "Provider cost, USD (non-streaming)."},
    "x-kiwiclaw-billed": {"schema": {"type": "string"}, "description": "Billed amount, USD (non-streaming)."},
}


def _errors(schema: str, statuses) -> dict:
    descriptions = {}
    for case, row in ERROR_TABLE.items():
        if row.status in statuses:
            descriptions.setdefault(row.status, []).append(case)
    out = {}
    for status_code in sorted(descriptions):
        headers = {"retry-after": {"schema": {"type": "string"}}} if status_code == 429 else {}
        out[str(status_code)] = {
            "description": "Error: " + ", ".join(descriptions[status_code]) + " (see the error table).",
            "headers": headers,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
        }
    return out


_POST_ERRORS = (400, 401, 403, 405, 413, 429, 500, 502, 503)


def _post(summary, request_schema, ok_schema, error_schema, security, description) -> dict:
    return {"post": {
        "operationId": summary.lower().replace(" ", "_"),
        "summary": summary, "description": description, "tags": ["proxy"], "security": security,
        "requestBody": {"required": True,
                        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{request_schema}"}}}},
        "responses": {
            "200": {"description": "The answer: JSON, or an SSE stream when `stream` is true.",
                    "headers": _ROUTING_HEADERS,
                    "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ok_schema}"}},
                                "text/event-stream": {"schema": {"type": "string"}}}},
            **_errors(error_schema, _POST_ERRORS),
        },
    }}


def add_proxy_paths(result, generator, request, public):
    """drf-spectacular postprocessing hook: add /v1 paths, schemas and the key security schemes."""
    components = result.setdefault("components", {})
    components.setdefault("schemas", {}).update(COMPONENTS)
    schemes = components.setdefault("securitySchemes", {})
    schemes.setdefault("apiKey", {"type": "http", "scheme": "bearer", "description": "A KiwiClaw API key (kc-…)."})
    schemes["anthropicKey"] = {"type": "apiKey", "in": "header", "name": "x-api-key"}
    bearer = [{"apiKey": []}]
    paths = result.setdefault("paths", {})
    paths["/v1/chat/completions"] = _post(
        "Chat completions", "ChatCompletionRequest", "ChatCompletion", "OpenAIError", bearer,
        "OpenAI-compatible. Streams `chat.completion.chunk` events ending in `data: [DONE]`, with a final "
        "usage chunk (usage.cost, usage.billed) when `stream_options.include_usage` is true.")
    paths["/v1/messages"] = _post(
        "Messages", "AnthropicMessagesRequest", "AnthropicMessage", "AnthropicError",
        [{"anthropicKey": []}, {"apiKey": []}],
        "Anthropic-compatible (`x-api-key` or Bearer; `anthropic-version` 2023-06-01 or 2026-10-21, absent "
        "meaning 2023-06-01, anything else a 400). Streams Anthropic's event sequence.")
    paths["/v1/models"] = {"get": {
        "operationId": "models_list", "summary": "Models", "tags": ["proxy"], "security": bearer,
        "description": "The tiers, and the catalog models where the plan allows naming them, for this key.",
        "responses": {"200": {"description": "OpenAI list format.",
                              "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ModelList"}}}},
                      **_errors("OpenAIError", (401, 403, 405, 500))},
    }}
    return result
