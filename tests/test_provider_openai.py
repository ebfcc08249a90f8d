"""The `openai` provider against a local server speaking the chat completions protocol."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from chief.core.errors import ProviderError, ProviderNotConfigured, RateLimited
from chief.core.plugins import get_registry, reset_plugin_manager
from chief.plugins.openai_compat import OpenAICompatProvider
from tests.http_stub import Reply, StubServer

KEY = "sk-test-SECRET-0123456789"
MESSAGES = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say hello"}]


def chat_reply(text: str = "Hello!", usage: bool = True) -> Reply:
    body = {"id": "c1", "object": "chat.completion", "model": "gpt-4o-mini-2024",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}
    if usage:
        body["usage"] = {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}
    return Reply(json=body)


def chunk(content: str | None = None, usage: dict | None = None) -> str:
    data = {"id": "c1", "object": "chat.completion.chunk", "model": "gpt-4o-mini-2024",
            "choices": [] if content is None else [{"index": 0, "delta": {"content": content}}]}
    if usage:
        data["usage"] = usage
    return "data: " + json.dumps(data)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_API_KEY", "CHIEF_OPENAI_BASE_URL", "CHIEF_OPENAI_MODEL", "CHIEF_OPENAI_API_VERSION",
                 "CHIEF_OPENAI_TIMEOUT_S", "CHIEF_OPENAI_MAX_ATTEMPTS"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def server() -> Iterator[StubServer]:
    with StubServer() as stub:
        yield stub


class Sleeps:
    """Records the pauses the provider asks for instead of sleeping."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def provider(server: StubServer, **kwargs) -> OpenAICompatProvider:
    kwargs.setdefault("sleep", Sleeps())
    return OpenAICompatProvider(api_key=KEY, base_url=server.url + "/v1", **kwargs)


async def test_provider_openai_completes_with_usage(server: StubServer) -> None:
    server.replies.append(chat_reply())
    completion = await provider(server).complete(MESSAGES, model="gpt-4o-mini", temperature=0.2, cache=False)
    assert (completion.text, completion.tokens_in, completion.tokens_out) == ("Hello!", 12, 3)
    assert completion.model == "gpt-4o-mini-2024" and not completion.tokens_estimated
    [seen] = server.seen
    assert (seen.method, seen.path) == ("POST", "/v1/chat/completions")
    assert seen.headers["authorization"] == f"Bearer {KEY}"
    assert seen.body == {"model": "gpt-4o-mini", "messages": MESSAGES, "temperature": 0.2}  # `cache` is Chief's own


async def test_provider_openai_estimates_tokens_without_usage(server: StubServer) -> None:
    server.replies.append(chat_reply("one two three", usage=False))
    completion = await provider(server).complete(MESSAGES)
    assert completion.tokens_estimated and completion.tokens_in > 0 and completion.tokens_out == 4


async def test_provider_openai_streams_tokens_as_they_arrive(server: StubServer) -> None:
    server.replies.append(Reply(events=[
        ": keep-alive", chunk("Hel"), chunk("lo"), chunk(" world"),
        chunk(usage={"prompt_tokens": 9, "completion_tokens": 3}), "data: [DONE]",
    ]))
    tokens: list[str] = []

    async def on_token(text: str) -> None:
        tokens.append(text)

    completion = await provider(server).complete(MESSAGES, on_token=on_token)
    assert tokens == ["Hel", "lo", " world"]
    assert (completion.text, completion.tokens_in, completion.tokens_out) == ("Hello world", 9, 3)
    body = server.seen[0].body
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


async def test_provider_openai_stream_without_usage_is_estimated(server: StubServer) -> None:
    server.replies.append(Reply(events=[chunk("a b"), "data: [DONE]"]))
    tokens: list[str] = []
    completion = await provider(server).complete(MESSAGES, on_token=tokens.append)  # a sync callback works too
    assert tokens == ["a b"] and completion.tokens_estimated


async def test_provider_openai_429_waits_what_retry_after_says(server: StubServer) -> None:
    server.replies.extend([Reply(status=429, headers={"Retry-After": "2"},
                                 json={"error": {"message": "Rate limit reached"}}), chat_reply()])
    sleeps = Sleeps()
    completion = await provider(server, sleep=sleeps).complete(MESSAGES)
    assert completion.text == "Hello!" and sleeps.calls == [2.0] and len(server.seen) == 2


async def test_provider_openai_429_longer_than_we_wait_fails_retryable(server: StubServer) -> None:
    server.replies.append(Reply(status=429, headers={"Retry-After": "3600"}, json={"error": {"message": "quota"}}))
    with pytest.raises(RateLimited) as caught:
        await provider(server, max_wait_s=30).complete(MESSAGES)
    assert caught.value.retryable and caught.value.retry_after == 3600
    assert "rate limited" in str(caught.value) and "3600 s" in str(caught.value) and len(server.seen) == 1


async def test_provider_openai_500_then_success(server: StubServer) -> None:
    server.replies.extend([Reply(status=500, json={"error": {"message": "boom"}}), chat_reply()])
    sleeps = Sleeps()
    completion = await provider(server, sleep=sleeps).complete(MESSAGES)
    assert completion.text == "Hello!" and len(sleeps.calls) == 1 and len(server.seen) == 2


async def test_provider_openai_500_every_time_fails_retryable(server: StubServer) -> None:
    server.default = Reply(status=503, text="upstream down")
    with pytest.raises(ProviderError) as caught:
        await provider(server, max_attempts=3).complete(MESSAGES)
    assert caught.value.retryable and "HTTP 503" in str(caught.value) and "upstream down" in str(caught.value)
    assert len(server.seen) == 3


async def test_provider_openai_timeout(server: StubServer) -> None:
    server.replies.append(Reply(hang=True))
    with pytest.raises(ProviderError) as caught:
        await provider(server, timeout_s=0.3, max_attempts=1).complete(MESSAGES)
    assert caught.value.retryable and "no answer" in str(caught.value) and "0.3 s" in str(caught.value)


async def test_provider_openai_401_names_the_variable_never_the_key(server: StubServer) -> None:
    server.default = Reply(status=401, json={"error": {"message": f"Incorrect API key provided: {KEY}"}})
    with pytest.raises(ProviderError) as caught:
        await provider(server).complete(MESSAGES)
    message = str(caught.value)
    assert not caught.value.retryable and "OPENAI_API_KEY" in message and "rejected" in message
    assert KEY not in message and "SECRET" not in message and len(server.seen) == 1
    assert KEY not in repr(provider(server))


async def test_provider_openai_400_quotes_the_server_without_the_key(server: StubServer) -> None:
    server.default = Reply(status=400, json={"error": {"message": f"bad model; your key {KEY} is fine"}})
    with pytest.raises(ProviderError) as caught:
        await provider(server).complete(MESSAGES)
    assert "bad model" in str(caught.value) and KEY not in str(caught.value) and not caught.value.retryable


async def test_provider_openai_malformed_json(server: StubServer) -> None:
    server.replies.append(Reply(text="<html>not an API</html>"))
    with pytest.raises(ProviderError) as caught:
        await provider(server).complete(MESSAGES)
    assert not caught.value.retryable and "malformed JSON" in str(caught.value)


async def test_provider_openai_malformed_json_in_a_stream(server: StubServer) -> None:
    server.replies.append(Reply(events=["data: {not json"]))
    with pytest.raises(ProviderError, match="malformed JSON in the stream"):
        await provider(server).complete(MESSAGES, on_token=lambda t: None)


async def test_provider_openai_answer_without_choices(server: StubServer) -> None:
    server.replies.append(Reply(json={"object": "list"}))
    with pytest.raises(ProviderError, match="without choices"):
        await provider(server).complete(MESSAGES)


async def test_provider_openai_unconfigured_says_what_to_set() -> None:
    with pytest.raises(ProviderNotConfigured) as caught:
        await OpenAICompatProvider().complete(MESSAGES)
    assert "OPENAI_API_KEY" in str(caught.value) and "CHIEF_OPENAI_BASE_URL" in str(caught.value)
    assert not caught.value.retryable


async def test_provider_openai_local_server_needs_no_key(server: StubServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHIEF_OPENAI_BASE_URL", server.url + "/v1")
    monkeypatch.setenv("CHIEF_OPENAI_MODEL", "llama3.2")
    server.replies.append(chat_reply())
    p = OpenAICompatProvider(sleep=Sleeps())
    assert p.configured() and p.default_model == "llama3.2" and "no key" in p.status()
    await p.complete(MESSAGES)
    assert "authorization" not in server.seen[0].headers and server.seen[0].body["model"] == "llama3.2"


async def test_provider_openai_azure_style(server: StubServer) -> None:
    server.replies.append(chat_reply())
    await provider(server, api_version="2024-06-01").complete(MESSAGES)
    seen = server.seen[0]
    assert seen.headers["api-key"] == KEY and "authorization" not in seen.headers
    assert seen.path == "/v1/chat/completions?api-version=2024-06-01"


def test_provider_openai_is_registered_with_a_model_family(monkeypatch: pytest.MonkeyPatch) -> None:
    reset_plugin_manager()
    try:
        registry = get_registry()
        assert registry.owner_of("provider", "openai") == "chief.plugins.openai_compat"
        member = registry.provider("openai:gpt-4.1")
        assert member.name == "openai:gpt-4.1" and member.default_model == "gpt-4.1"
        assert registry.provider("openai:gpt-4.1") is member
    finally:
        reset_plugin_manager()


def test_provider_openai_chief_providers_check(server: StubServer, tmp_path) -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    server.default = chat_reply("ok")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHIEF_", "OPENAI_", "ANTHROPIC_"))}
    env.update(CHIEF_HOME=str(tmp_path / "home"), OPENAI_API_KEY=KEY, CHIEF_OPENAI_BASE_URL=server.url + "/v1",
               LLM_USER_PATH=str(tmp_path / "llm"), CHIEF_LLM_MODEL="echo", COLUMNS="200")  # no real model
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-m", "chief.cli", "providers", "--check", "--json"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert KEY not in done.stdout and KEY not in done.stderr
    rows = {r["name"]: r for r in json.loads(done.stdout)["providers"]}
    assert rows["openai"]["health"]["ok"] is True and rows["openai"]["status"].endswith("(key set)")
    assert rows["anthropic"]["health"] == {"ok": None, "detail": "not checked: not configured"}
    assert rows["offline"]["default"] and rows["offline"]["health"]["ok"] is True
    assert "llm:echo" in rows["llm"]["models"] and rows["llm"]["health"]["ok"] is True
    table = subprocess.run([sys.executable, "-m", "chief.cli", "providers"], cwd=root, env=env,
                           capture_output=True, text=True, timeout=120)
    assert "openai" in table.stdout and "not configured: set ANTHROPIC_API_KEY" in table.stdout
    assert KEY not in table.stdout


async def test_provider_openai_stream_stalling_after_tokens_is_not_retried(server: StubServer) -> None:
    # a retry would show the first tokens twice in the chat: fail instead, and let the step retry
    server.replies.append(Reply(events=[chunk("Hel"), chunk("lo")], hang=True))
    server.replies.append(Reply(events=[chunk("again"), "data: [DONE]"]))
    tokens: list[str] = []
    with pytest.raises(ProviderError, match="within 0.3 s while streaming") as caught:
        await provider(server, timeout_s=0.3, max_attempts=3).complete(MESSAGES, on_token=tokens.append)
    assert tokens == ["Hel", "lo"] and len(server.seen) == 1 and caught.value.retryable


async def test_provider_openai_stream_refused_before_any_token_is_retried(server: StubServer) -> None:
    server.replies.extend([Reply(status=502, text="bad gateway"), Reply(events=[chunk("ok"), "data: [DONE]"])])
    tokens: list[str] = []
    completion = await provider(server).complete(MESSAGES, on_token=tokens.append)
    assert tokens == ["ok"] and completion.text == "ok" and len(server.seen) == 2


def test_provider_openai_retry_after_as_an_http_date() -> None:
    import email.utils
    import time

    from chief.plugins.http_api import parse_retry_after

    soon = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= parse_retry_after(soon) <= 31
    assert parse_retry_after("7") == 7.0 and parse_retry_after(None) is None and parse_retry_after("soon") is None
