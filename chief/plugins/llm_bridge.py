"""The `llm` bridge: every model of Simon Willison's `llm` package and its plugins as a Chief provider.

`pip install llm llm-ollama` (or any of the `llm-*` model plugins) and the provider
`llm:<model id>` works in Chief: per step (`provider: "llm:mistral-7b"`), per agent, or globally
(`CHIEF_PROVIDER=llm:gpt-4o-mini`). The plain name `llm` uses `CHIEF_LLM_MODEL` (default
`gpt-4o-mini`, llm's own default). Keys are llm's (`llm keys set ...` or the model's variable).

`llm` is optional: when it is not installed this module registers nothing and `chief providers`
says so. Importing `llm` and its plugins takes most of a second, so it happens on the first
completion (in a thread), never while plugins register. Async models are used where a plugin
provides them; sync ones run in a thread. Streaming (`on_token`) works with both.
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
from collections.abc import Sequence
from typing import Any

from chief.core.accounting import estimate_tokens
from chief.core.agents import Completion, Message
from chief.core.errors import ProviderError, ProviderNotConfigured
from chief.core.hookspecs import hookimpl

from .http_api import emit_token

PREFIX = "llm"
DEFAULT_MODEL = "gpt-4o-mini"
_import_lock = threading.Lock()


def available() -> bool:
    """True when the `llm` package is installed (checked without importing it)."""
    return importlib.util.find_spec("llm") is not None


def _llm() -> Any:
    with _import_lock:  # llm loads its plugins on first use; once is enough
        import llm

        return llm


def flatten(messages: Sequence[Message]) -> tuple[str, str | None]:
    """(prompt, system) for llm: system messages joined; earlier turns written before the last user message."""
    system = "\n\n".join(m["content"] for m in messages if m.get("role") == "system") or None
    turns = [m for m in messages if m.get("role") != "system"]
    if not turns:
        return "", system
    *earlier, last = turns
    if not earlier:
        return last["content"], system
    history = "\n\n".join(f"{m.get('role', 'user')}: {m['content']}" for m in earlier)
    return f"{history}\n\n{last.get('role', 'user')}: {last['content']}", system


class LlmProvider:
    """One `llm` model (`llm:<model id>`), or the family `llm` with `CHIEF_LLM_MODEL` as its model."""

    def __init__(self, model_id: str | None = None) -> None:
        self.model_id = model_id
        self.name = f"{PREFIX}:{model_id}" if model_id else PREFIX

    def __repr__(self) -> str:
        return f"LlmProvider({self.name!r})"

    @property
    def default_model(self) -> str:
        import os

        return self.model_id or os.environ.get("CHIEF_LLM_MODEL") or DEFAULT_MODEL

    def for_model(self, model: str) -> LlmProvider:
        """The provider `llm:<model>`."""
        return LlmProvider(model)

    def status(self) -> str:
        """One line for `chief providers`."""
        from importlib import metadata

        return f"llm {metadata.version('llm')}: models as llm:<model id> (keys: `llm keys set`)"

    def models(self) -> list[str]:
        """Every model llm and its plugins provide, as `llm:<id>` (imports llm: for `chief providers`)."""
        llm = _llm()
        ids = [m.model_id for m in llm.get_models()]
        ids += [m.model_id for m in llm.get_async_models() if m.model_id not in ids]
        return [f"{PREFIX}:{i}" for i in ids]

    async def complete(self, messages: Sequence[Message], *, model: str | None = None, **options: Any) -> Completion:
        """Ask the llm model (`model`, else this provider's); stream into `on_token` when given."""
        on_token = options.pop("on_token", None)
        model_id = model or self.default_model
        if model_id.startswith(f"{PREFIX}:"):
            model_id = model_id[len(PREFIX) + 1:]
        llm = await asyncio.to_thread(_llm)
        prompt, system = flatten(messages)
        try:
            async_model = llm.get_async_model(model_id)
        except llm.UnknownModelError:
            async_model = None
        try:
            if async_model is not None:
                kwargs = _prompt_kwargs(async_model, system, options)
                response = async_model.prompt(prompt, stream=on_token is not None, **kwargs)
                parts = []
                async for chunk in response:
                    parts.append(chunk)
                    await emit_token(on_token, chunk)
                usage = await response.usage()
            else:
                parts, usage = await self._complete_sync(llm, model_id, prompt, system, options, on_token)
        except llm.UnknownModelError:
            raise ProviderError(
                f"{PREFIX}: no model '{model_id}' in llm; see `chief providers` or `llm models` "
                "(install the llm plugin that provides it)", retryable=False,
            ) from None
        except llm.errors.NeedsKeyException as exc:
            raise ProviderNotConfigured(f"{PREFIX}:{model_id}: {exc}") from None
        except ProviderError:
            raise
        except Exception as exc:  # a model plugin's own error: say whose it is, let the step retry
            raise ProviderError(f"{PREFIX}:{model_id}: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}",
                                retryable=True) from exc
        text = "".join(parts)
        tokens_in = getattr(usage, "input", None)
        tokens_out = getattr(usage, "output", None)
        if isinstance(tokens_in, int) and isinstance(tokens_out, int):
            return Completion(text=text, model=model_id, tokens_in=tokens_in, tokens_out=tokens_out)
        return Completion(text=text, model=model_id, tokens_in=estimate_tokens(f"{system or ''}\n{prompt}"),
                          tokens_out=estimate_tokens(text), tokens_estimated=True)

    async def _complete_sync(self, llm: Any, model_id: str, prompt: str, system: str | None,
                             options: dict[str, Any], on_token: Any) -> tuple[list[str], Any]:
        loop = asyncio.get_running_loop()

        def run() -> tuple[list[str], Any]:
            sync_model = llm.get_model(model_id)
            response = sync_model.prompt(prompt, stream=on_token is not None,
                                         **_prompt_kwargs(sync_model, system, options))
            parts = []
            for chunk in response:
                parts.append(chunk)
                if on_token is not None:  # hand the token to the loop and wait, so order is kept
                    asyncio.run_coroutine_threadsafe(emit_token(on_token, chunk), loop).result()
            return parts, response.usage()

        return await asyncio.to_thread(run)


def _prompt_kwargs(model: Any, system: str | None, options: dict[str, Any]) -> dict[str, Any]:
    """`system=` and the options this model declares (others are Chief's own or another API's)."""
    kwargs: dict[str, Any] = {"system": system} if system else {}
    fields = getattr(getattr(model, "Options", None), "model_fields", {}) or {}
    passed = {k: v for k, v in options.items() if k in fields and v is not None}
    if passed:
        kwargs["options"] = passed
    return kwargs


@hookimpl
def register_providers(register: Any) -> None:
    """Register `llm` (the family; `llm:<id>` resolves through it) when the llm package is installed."""
    if available():
        register(LlmProvider())
