"""The `openai` provider: any server that speaks OpenAI's chat completions API.

OpenAI itself, Azure OpenAI, Ollama, vLLM, LM Studio, llama.cpp's server, LiteLLM... Settings
(environment, read when the provider is used, so a changed variable needs no restart):

- `OPENAI_API_KEY`: the key, sent as `Authorization: Bearer` (as `api-key` for Azure).
- `CHIEF_OPENAI_BASE_URL`: default `https://api.openai.com/v1`; e.g. `http://127.0.0.1:11434/v1`
  for Ollama (a local server needs no key).
- `CHIEF_OPENAI_API_VERSION`: set for Azure-style deployments (`.../openai/deployments/<name>`);
  adds `?api-version=` and sends the key as `api-key`.
- `CHIEF_OPENAI_MODEL`: the default model (default `gpt-4o-mini`).
- `CHIEF_OPENAI_TIMEOUT_S` (default 60), `CHIEF_OPENAI_MAX_ATTEMPTS` (default 3).

`complete(messages, model=, on_token=, temperature=, max_tokens=, ...)`: with `on_token` the answer
is streamed (server-sent events) and each text delta is handed to the callback as it arrives.
Token counts come from the server's `usage`; when it sends none they are estimated and the
completion is marked `tokens_estimated=True`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from chief.core.accounting import estimate_tokens
from chief.core.agents import Completion, Message
from chief.core.errors import ProviderError, ProviderNotConfigured
from chief.core.hookspecs import hookimpl

from .http_api import HttpApi, emit_token, public_url
from .http_provider import HttpProvider

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_MODEL = "gpt-4o-mini"
# Options passed through to the API as they are; anything else is Chief's own and never sent.
PASSED_OPTIONS = ("temperature", "top_p", "max_tokens", "max_completion_tokens", "stop", "seed",
                  "presence_penalty", "frequency_penalty", "response_format", "user")


class OpenAICompatProvider(HttpProvider):
    """Chat completions over HTTP against OpenAI or any OpenAI-compatible server."""

    name = "openai"
    KEY_ENV = "OPENAI_API_KEY"
    ENV_PREFIX = "CHIEF_OPENAI"
    DEFAULT_BASE_URL = DEFAULT_BASE_URL
    DEFAULT_MODEL = DEFAULT_MODEL

    def __init__(self, *, api_version: str | None = None, **settings: Any) -> None:
        super().__init__(**settings)
        self._api_version = api_version

    @property
    def api_version(self) -> str | None:
        return self._api_version or os.environ.get("CHIEF_OPENAI_API_VERSION") or None

    def configured(self) -> bool:
        """True when there is a key, or a base URL other than OpenAI's (local servers need no key)."""
        return bool(self.api_key) or (self.base_url.rstrip("/") != DEFAULT_BASE_URL)

    def status(self) -> str:
        """One line for `chief providers` (the key is never shown, only whether there is one)."""
        if not self.configured():
            return "not configured: set OPENAI_API_KEY or CHIEF_OPENAI_BASE_URL"
        key = "key set" if self.api_key else "no key"
        azure = f", api-version {self.api_version}" if self.api_version else ""
        return f"{public_url(self.base_url)} ({key}{azure})"

    def api(self) -> HttpApi:
        """The HTTP settings of one call; `ProviderNotConfigured` when nothing says where to go."""
        if not self.configured():
            raise ProviderNotConfigured(
                f"{self.name}: not configured: set OPENAI_API_KEY (for OpenAI) or CHIEF_OPENAI_BASE_URL "
                "(for Ollama, vLLM, LM Studio, llama.cpp; e.g. http://127.0.0.1:11434/v1)"
            )
        key = self.api_key
        headers = {"content-type": "application/json", "accept": "application/json"}
        if key:
            headers["api-key" if self.api_version else "authorization"] = key if self.api_version else f"Bearer {key}"
        return self.http(headers=headers,
                         key_hint="OPENAI_API_KEY" if key else "OPENAI_API_KEY (none is set; the server wants one)",
                         params={"api-version": self.api_version} if self.api_version else None)

    # -- the call -------------------------------------------------------------------------------------
    async def complete(self, messages: Sequence[Message], *, model: str | None = None, **options: Any) -> Completion:
        """Answer `messages`; stream into `options["on_token"]` when it is given."""
        api = self.api()
        on_token = options.pop("on_token", None)
        model = model or self.default_model
        body: dict[str, Any] = {"model": model, "messages": [dict(m) for m in messages]}
        body.update({k: v for k, v in options.items() if k in PASSED_OPTIONS and v is not None})
        if on_token is None:
            data = await api.post_json("chat/completions", body)
            return _completion(api, data, messages, model)
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
        return await _stream(api, body, messages, model, on_token)


def _completion(api: HttpApi, data: dict[str, Any], messages: Sequence[Message], model: str) -> Completion:
    try:
        text = data["choices"][0]["message"].get("content") or ""
    except (KeyError, IndexError, TypeError, AttributeError):
        raise ProviderError(
            f"{api.label}: {public_url(api.base_url)} answered without choices[0].message "
            f"({api.redact(json.dumps(data)[:120])})", retryable=False,
        ) from None
    return _with_usage(text, data.get("model") or model, data.get("usage"), messages)


def _with_usage(text: str, model: str, usage: Any, messages: Sequence[Message]) -> Completion:
    if isinstance(usage, dict) and isinstance(usage.get("prompt_tokens"), int):
        return Completion(text=text, model=model, tokens_in=usage["prompt_tokens"],
                          tokens_out=int(usage.get("completion_tokens") or 0))
    prompt = "\n".join(str(m.get("content", "")) for m in messages)
    return Completion(text=text, model=model, tokens_in=estimate_tokens(prompt), tokens_out=estimate_tokens(text),
                      tokens_estimated=True)


async def _stream(api: HttpApi, body: dict[str, Any], messages: Sequence[Message], model: str,
                  on_token: Any) -> Completion:
    parts: list[str] = []
    state: dict[str, Any] = {"usage": None, "model": model}

    async def handle(event: str | None, data: str) -> bool:
        if data.strip() == "[DONE]":
            return False
        chunk = api.decode_event(data, "chunk")
        if "error" in chunk:  # some servers report a failure inside a 200 stream
            err = chunk["error"]
            message = err.get("message") if isinstance(err, dict) else str(err)
            raise ProviderError(f"{api.label}: error in the stream: {api.redact(str(message))}", retryable=True)
        if chunk.get("usage"):
            state["usage"] = chunk["usage"]
        state["model"] = chunk.get("model") or state["model"]
        emitted = False
        for choice in chunk.get("choices") or ():
            delta = (choice or {}).get("delta") or {}
            text = delta.get("content")
            if text:
                parts.append(text)
                await emit_token(on_token, text)
                emitted = True
        return emitted

    await api.stream_sse("chat/completions", body, handle)
    return _with_usage("".join(parts), state["model"], state["usage"], messages)


@hookimpl
def register_providers(register: Any) -> None:
    """Register `openai` (always; it says what to set when used unconfigured)."""
    register(OpenAICompatProvider())
