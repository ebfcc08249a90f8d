"""What the HTTP providers share: one JSON or SSE request with timeouts, retries and clear errors.

Retried inside the provider (tenacity, exponential backoff with jitter): 429 (waiting what
`Retry-After` asks, up to `max_wait_s`), 5xx and 529, connection errors and timeouts. A
streamed answer is retried only until its first token has been handed to `on_token`, so a
chat never shows a token twice. Everything else fails at once with a `ProviderError` whose
message says what to fix; no message ever contains the API key (it is redacted from any
server text we quote, and a 401 quotes nothing).
"""

from __future__ import annotations

import asyncio
import email.utils
import inspect
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from chief.core.errors import ProviderError, RateLimited

TokenCallback = Callable[[str], Any]  # called with each text delta; may be sync or async
QUOTE_CHARS = 300


def public_url(url: str) -> str:
    """`scheme://host[:port]/path` of `url` without credentials or query (safe to print)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}".rstrip("/")


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a `Retry-After` header (a number of seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


async def emit_token(on_token: TokenCallback | None, text: str) -> None:
    """Hand one text delta to the caller's callback (sync or async)."""
    if on_token is None or not text:
        return
    outcome = on_token(text)
    if inspect.isawaitable(outcome):
        await outcome


@dataclass
class HttpApi:
    """One provider's HTTP settings; `post_json` / `stream_sse` do a request with retries and error mapping.

    `label` starts every error message ("openai", "anthropic"); `key_hint` says where the key
    comes from ("OPENAI_API_KEY"); `secret` is redacted from any quoted server text.
    """

    label: str
    base_url: str
    headers: Mapping[str, str]
    key_hint: str
    timeout_s: float = 60.0
    connect_timeout_s: float = 10.0
    max_attempts: int = 3
    backoff_s: float = 0.5
    max_wait_s: float = 60.0
    secret: str | None = None
    params: Mapping[str, str] | None = None
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    # -- requests ------------------------------------------------------------------------------------
    async def post_json(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST `body` and return the decoded JSON answer (retrying what may heal)."""

        async def once() -> dict[str, Any]:
            async with self._client() as client:
                try:
                    response = await client.post(self._url(path), json=body)
                except httpx.TimeoutException as exc:
                    raise self._timeout_error() from exc
                except httpx.TransportError as exc:
                    raise self._transport_error(exc) from exc
                if response.status_code >= 400:
                    raise self.status_error(response.status_code, response.headers, response.text)
                return self.decode(response.text)

        return await self._retrying(once)

    async def stream_sse(
        self, path: str, body: dict[str, Any], handle: Callable[[str | None, str], Awaitable[bool]]
    ) -> None:
        """POST `body` and feed each server-sent event `(event name, data)` to `handle`.

        `handle` returns True once it has emitted a token; from then on a failure is not
        retried here (the caller has shown part of the answer), it is raised.
        """
        emitted = False

        async def once() -> None:
            nonlocal emitted
            async with self._client() as client:
                try:
                    async with client.stream("POST", self._url(path), json=body) as response:
                        if response.status_code >= 400:
                            text = (await response.aread()).decode("utf-8", "replace")
                            raise self.status_error(response.status_code, response.headers, text)
                        async for event, data in _sse_events(response.aiter_lines()):
                            if await handle(event, data):
                                emitted = True
                except httpx.TimeoutException as exc:
                    raise self._timeout_error(streaming=emitted) from exc
                except httpx.TransportError as exc:
                    raise self._transport_error(exc) from exc

        await self._retrying(once, stop_retrying=lambda: emitted)

    # -- retries -------------------------------------------------------------------------------------
    async def _retrying(self, once: Callable[[], Awaitable[Any]], stop_retrying: Callable[[], bool] = lambda: False) -> Any:
        backoff = wait_exponential_jitter(initial=self.backoff_s, max=self.max_wait_s, jitter=self.backoff_s)

        def wait(state: Any) -> float:
            exc = state.outcome.exception() if state.outcome else None
            if isinstance(exc, RateLimited) and exc.retry_after is not None:
                return exc.retry_after  # the server said how long; never less (it would only refuse again)
            return backoff(state)

        def should_retry(exc: BaseException) -> bool:
            if stop_retrying() or not isinstance(exc, ProviderError) or not exc.retryable:
                return False
            # a server asking for a longer pause than we will wait: fail now, the step's own retry may try later
            return not (isinstance(exc, RateLimited) and exc.retry_after is not None and exc.retry_after > self.max_wait_s)

        retrying = AsyncRetrying(stop=stop_after_attempt(max(self.max_attempts, 1)), wait=wait,
                                 retry=retry_if_exception(should_retry), sleep=self.sleep, reraise=True)
        async for attempt in retrying:
            with attempt:
                return await once()
        raise AssertionError("unreachable")  # pragma: no cover - reraise=True always raises or returns

    # -- errors --------------------------------------------------------------------------------------
    def redact(self, text: str) -> str:
        """`text` without the secret (servers sometimes echo the key they refused), on one line, capped."""
        if self.secret:
            text = text.replace(self.secret, "***")
        text = " ".join(text.split())
        return text if len(text) <= QUOTE_CHARS else text[: QUOTE_CHARS - 3] + "..."

    def status_error(self, status: int, headers: Mapping[str, str], text: str) -> ProviderError:
        """The `ProviderError` for an HTTP error status (never quoting the key)."""
        where = public_url(self.base_url)
        if status in (401, 403):
            verb = "rejected" if status == 401 else "not allowed to do this"
            return ProviderError(
                f"{self.label}: the API key was {verb} by {where} (HTTP {status}): check {self.key_hint}",
                retryable=False,
            )
        detail = _error_detail(text)
        detail = f": {self.redact(detail)}" if detail else ""
        if status in (429, 529):
            retry_after = parse_retry_after(headers.get("retry-after"))
            wait = f"; the server asked to retry after {retry_after:g} s" if retry_after is not None else ""
            what = "rate limited" if status == 429 else "overloaded"
            return RateLimited(f"{self.label}: {what} by {where} (HTTP {status}){wait}{detail}", retry_after=retry_after)
        if status >= 500:
            return ProviderError(f"{self.label}: server error at {where} (HTTP {status}){detail}", retryable=True)
        if status == 404:
            return ProviderError(
                f"{self.label}: {where} answered 404 (unknown model or wrong base URL){detail}", retryable=False
            )
        return ProviderError(f"{self.label}: request refused by {where} (HTTP {status}){detail}", retryable=False)

    def decode(self, text: str) -> dict[str, Any]:
        """The JSON object in `text`, or a non-retryable error saying the server does not speak the API."""
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise ProviderError(
                f"{self.label}: {public_url(self.base_url)} answered with malformed JSON "
                f"({self.redact(text[:80]) or 'empty body'!r}): is the base URL an API endpoint?",
                retryable=False,
            )
        return data

    def decode_event(self, data: str, what: str = "event") -> dict[str, Any]:
        """The JSON object of one streamed (SSE) `what` ("event", "chunk"), or a non-retryable error."""
        try:
            payload = json.loads(data)
        except ValueError:
            raise ProviderError(f"{self.label}: malformed JSON in the stream from {public_url(self.base_url)} "
                                f"({self.redact(data[:80])!r})", retryable=False) from None
        if not isinstance(payload, dict):
            raise ProviderError(f"{self.label}: unexpected stream {what} ({self.redact(data[:80])!r})",
                                retryable=False)
        return payload

    def _timeout_error(self, streaming: bool = False) -> ProviderError:
        during = " while streaming" if streaming else ""
        return ProviderError(
            f"{self.label}: no answer from {public_url(self.base_url)} within {self.timeout_s:g} s{during}",
            retryable=True,
        )

    def _transport_error(self, exc: httpx.TransportError) -> ProviderError:
        return ProviderError(
            f"{self.label}: cannot reach {public_url(self.base_url)}: {type(exc).__name__}", retryable=True
        )

    # -- plumbing ------------------------------------------------------------------------------------
    def _client(self) -> httpx.AsyncClient:
        # a client per call: a provider object outlives event loops (tests, CLI), a pooled client must not
        timeout = httpx.Timeout(self.timeout_s, connect=min(self.connect_timeout_s, self.timeout_s))
        return httpx.AsyncClient(headers=dict(self.headers), timeout=timeout, params=dict(self.params or {}),
                                 trust_env=True)

    def _url(self, path: str) -> str:
        return self.base_url.rstrip("/") + "/" + path.lstrip("/")


def _error_detail(text: str) -> str:
    """The message inside an `{"error": {"message": ...}}` body (OpenAI, Anthropic), else the raw text."""
    try:
        data = json.loads(text)
    except ValueError:
        return text.strip()
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return err["message"]
        if isinstance(err, str):
            return err
        if isinstance(data.get("message"), str):
            return data["message"]
    return text.strip()


async def _sse_events(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str | None, str]]:
    """Server-sent events as `(event, data)`; multi-line data joined with newlines (the SSE rules)."""
    event: str | None = None
    data: list[str] = []
    async for line in lines:
        if line == "":
            if data:
                yield event, "\n".join(data)
            event, data = None, []
            continue
        if line.startswith(":"):
            continue  # a comment / keep-alive
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
    if data:
        yield event, "\n".join(data)
