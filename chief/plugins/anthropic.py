"""The `anthropic` provider: Anthropic's Messages API (`POST /v1/messages`).

Settings (environment, read when the provider is used):

- `ANTHROPIC_API_KEY`: the key, sent as `x-api-key`.
- `CHIEF_ANTHROPIC_BASE_URL`: default `https://api.anthropic.com` (a proxy or a local stand-in).
- `CHIEF_ANTHROPIC_MODEL`: the default model (default `claude-sonnet-4-5`).
- `CHIEF_ANTHROPIC_TIMEOUT_S` (default 60), `CHIEF_ANTHROPIC_MAX_ATTEMPTS` (default 3).

System messages are joined into the API's `system` field; consecutive messages of the same
role are merged (the API wants user and assistant to alternate). `max_tokens` is required by
the API: default 4096. With `on_token` the answer is streamed (server-sent events) and each
text delta is handed to the callback as it arrives. 429 and 529 (overloaded) are retried,
honouring `retry-after`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from chief.core.accounting import estimate_tokens
from chief.core.agents import Completion, Message
from chief.core.errors import ProviderError, ProviderNotConfigured
from chief.core.hookspecs import hookimpl

from .http_api import HttpApi, emit_token, public_url
from .http_provider import HttpProvider

DEFAULT_BASE_URL = "https://api.anthropic.com"
DEFAULT_MODEL = "claude-sonnet-4-5"
API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096
PASSED_OPTIONS = ("temperature", "top_p", "top_k", "stop_sequences", "metadata")


class AnthropicProvider(HttpProvider):
    """Claude models over Anthropic's Messages API."""

    name = "anthropic"
    KEY_ENV = "ANTHROPIC_API_KEY"
    ENV_PREFIX = "CHIEF_ANTHROPIC"
    DEFAULT_BASE_URL = DEFAULT_BASE_URL
    DEFAULT_MODEL = DEFAULT_MODEL

    def configured(self) -> bool:
        """True when a key is set (Anthropic's API always wants one)."""
        return bool(self.api_key)

    def status(self) -> str:
        """One line for `chief providers` (never the key)."""
        if not self.configured():
            return "not configured: set ANTHROPIC_API_KEY"
        return f"{public_url(self.base_url)} (key set)"

    def api(self) -> HttpApi:
        """The HTTP settings of one call; `ProviderNotConfigured` without a key."""
        key = self.api_key
        if not key:
            raise ProviderNotConfigured(f"{self.name}: not configured: set ANTHROPIC_API_KEY "
                                        "(and CHIEF_ANTHROPIC_BASE_URL for a proxy)")
        return self.http(headers={"x-api-key": key, "anthropic-version": API_VERSION,
                                  "content-type": "application/json"}, key_hint="ANTHROPIC_API_KEY")

    async def complete(self, messages: Sequence[Message], *, model: str | None = None, **options: Any) -> Completion:
        """Answer `messages`; stream into `options["on_token"]` when it is given."""
        api = self.api()
        on_token = options.pop("on_token", None)
        model = model or self.default_model
        body = request_body(messages, model, options)
        if on_token is None:
            data = await api.post_json("v1/messages", body)
            return _completion(api, data, messages, model)
        body["stream"] = True
        return await _stream(api, body, messages, model, on_token)


def request_body(messages: Sequence[Message], model: str, options: dict[str, Any]) -> dict[str, Any]:
    """The Messages API body: system messages joined into `system`, same-role neighbours merged."""
    system = [m["content"] for m in messages if m.get("role") == "system"]
    turns: list[dict[str, str]] = []
    for m in messages:
        role = m.get("role")
        if role == "system":
            continue
        role = "assistant" if role == "assistant" else "user"
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] += "\n\n" + m["content"]
        else:
            turns.append({"role": role, "content": m["content"]})
    if not turns or turns[0]["role"] != "user":  # the API wants the conversation to open with the user
        turns.insert(0, {"role": "user", "content": "(continue)"})
    body: dict[str, Any] = {"model": model, "messages": turns,
                            "max_tokens": int(options.get("max_tokens") or DEFAULT_MAX_TOKENS)}
    if system:
        body["system"] = "\n\n".join(system)
    if options.get("stop"):
        body["stop_sequences"] = options["stop"] if isinstance(options["stop"], list) else [options["stop"]]
    body.update({k: v for k, v in options.items() if k in PASSED_OPTIONS and v is not None})
    return body


def _usage(text: str, model: str, tokens_in: Any, tokens_out: Any, messages: Sequence[Message]) -> Completion:
    if isinstance(tokens_in, int) and isinstance(tokens_out, int):
        return Completion(text=text, model=model, tokens_in=tokens_in, tokens_out=tokens_out)
    prompt = "\n".join(str(m.get("content", "")) for m in messages)
    return Completion(text=text, model=model, tokens_in=estimate_tokens(prompt), tokens_out=estimate_tokens(text),
                      tokens_estimated=True)


def _completion(api: HttpApi, data: dict[str, Any], messages: Sequence[Message], model: str) -> Completion:
    content = data.get("content")
    if not isinstance(content, list):
        raise ProviderError(f"{api.label}: {public_url(api.base_url)} answered without a content list "
                            f"({api.redact(json.dumps(data)[:120])})", retryable=False)
    text = "".join(b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text")
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    return _usage(text, data.get("model") or model, usage.get("input_tokens"), usage.get("output_tokens"), messages)


async def _stream(api: HttpApi, body: dict[str, Any], messages: Sequence[Message], model: str,
                  on_token: Any) -> Completion:
    parts: list[str] = []
    state: dict[str, Any] = {"model": model, "in": None, "out": None}

    async def handle(event: str | None, data: str) -> bool:
        payload = api.decode_event(data, "event")
        kind = payload.get("type") or event
        if kind == "error":
            err = payload.get("error") or {}
            message = err.get("message") if isinstance(err, dict) else str(err)
            overloaded = isinstance(err, dict) and err.get("type") == "overloaded_error"
            raise ProviderError(f"{api.label}: error in the stream{' (overloaded)' if overloaded else ''}: "
                                f"{api.redact(str(message))}", retryable=True)
        if kind == "message_start":
            message = payload.get("message") or {}
            state["model"] = message.get("model") or state["model"]
            usage = message.get("usage") or {}
            state["in"] = usage.get("input_tokens", state["in"])
            state["out"] = usage.get("output_tokens", state["out"])
        elif kind == "message_delta":
            usage = payload.get("usage") or {}
            state["out"] = usage.get("output_tokens", state["out"])
            if usage.get("input_tokens") is not None:
                state["in"] = usage["input_tokens"]
        elif kind == "content_block_delta":
            delta = payload.get("delta") or {}
            if delta.get("type") == "text_delta" and delta.get("text"):
                parts.append(delta["text"])
                await emit_token(on_token, delta["text"])
                return True
        return False

    await api.stream_sse("v1/messages", body, handle)
    return _usage("".join(parts), state["model"], state["in"], state["out"], messages)


@hookimpl
def register_providers(register: Any) -> None:
    """Register `anthropic` (always; it says what to set when used unconfigured)."""
    register(AnthropicProvider())
