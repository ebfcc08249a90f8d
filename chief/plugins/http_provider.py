"""What the HTTP providers share: settings read late from the environment, a key-safe repr, `for_model`,
and the `HttpApi` of one call.

A subclass names its environment (`KEY_ENV`, `ENV_PREFIX`) and defaults; explicit constructor
arguments win over the environment, which is read at each call so a changed variable needs no restart:
`<KEY_ENV>`, `<ENV_PREFIX>_BASE_URL`, `<ENV_PREFIX>_MODEL`, `<ENV_PREFIX>_TIMEOUT_S` (default 60),
`<ENV_PREFIX>_MAX_ATTEMPTS` (default 3).
"""

from __future__ import annotations

import copy
import os
from typing import Any

from chief.core.errors import ProviderNotConfigured

from .http_api import HttpApi, public_url


def env_number(name: str, default: float) -> float:
    """A number from the environment; `ProviderNotConfigured` naming the variable if it is not one."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ProviderNotConfigured(f"{name} must be a number, got {raw!r}") from None


class HttpProvider:
    """Base of the providers that speak an HTTP API (`openai`, `anthropic`)."""

    name = "http"
    KEY_ENV = ""  # e.g. "OPENAI_API_KEY"
    ENV_PREFIX = ""  # e.g. "CHIEF_OPENAI"
    DEFAULT_BASE_URL = ""
    DEFAULT_MODEL = ""

    def __init__(self, *, name: str | None = None, api_key: str | None = None, base_url: str | None = None,
                 default_model: str | None = None, timeout_s: float | None = None,
                 max_attempts: int | None = None, backoff_s: float = 0.5, max_wait_s: float = 60.0,
                 sleep: Any = None) -> None:
        self.name = name or type(self).name
        self._api_key = api_key
        self._base_url = base_url
        self._default_model = default_model
        self._timeout_s = timeout_s
        self._max_attempts = max_attempts
        self._backoff_s = backoff_s
        self._max_wait_s = max_wait_s
        self._sleep = sleep

    def __repr__(self) -> str:  # never the key
        return f"{type(self).__name__}(name={self.name!r}, base_url={public_url(self.base_url)!r})"

    @property
    def api_key(self) -> str | None:
        return self._api_key or os.environ.get(self.KEY_ENV) or None

    @property
    def base_url(self) -> str:
        return self._base_url or os.environ.get(f"{self.ENV_PREFIX}_BASE_URL") or self.DEFAULT_BASE_URL

    @property
    def default_model(self) -> str:
        return self._default_model or os.environ.get(f"{self.ENV_PREFIX}_MODEL") or self.DEFAULT_MODEL

    def models(self) -> list[str]:
        """The models known without asking the server: the default one."""
        return [self.default_model]

    def for_model(self, model: str) -> HttpProvider:
        """This provider with `model` as its default (what `<name>:<model>` names)."""
        other = copy.copy(self)
        other.name = f"{self.name}:{model}"
        other._default_model = model
        return other

    def http(self, *, headers: dict[str, str], key_hint: str, params: dict[str, str] | None = None) -> HttpApi:
        """The HTTP settings of one call: timeouts and attempts from the arguments or the environment."""
        extra: dict[str, Any] = {} if self._sleep is None else {"sleep": self._sleep}
        timeout_s = self._timeout_s if self._timeout_s is not None else env_number(f"{self.ENV_PREFIX}_TIMEOUT_S", 60.0)
        attempts = self._max_attempts if self._max_attempts is not None else int(
            env_number(f"{self.ENV_PREFIX}_MAX_ATTEMPTS", 3))
        return HttpApi(label=self.name, base_url=self.base_url, headers=headers, key_hint=key_hint,
                       timeout_s=timeout_s, max_attempts=attempts, backoff_s=self._backoff_s,
                       max_wait_s=self._max_wait_s, secret=self.api_key, params=params, **extra)
