"""The `anthropic` provider against a local server speaking the Messages API."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from chief.core.errors import ProviderError, ProviderNotConfigured, RateLimited
from chief.plugins.anthropic import API_VERSION, AnthropicProvider, request_body
from tests.http_stub import Reply, StubServer

KEY = "sk-ant-SECRET-0123456789"
MESSAGES = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say hello"}]


def message_reply(text: str = "Hello!", usage: bool = True) -> Reply:
    body = {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-test-1",
            "content": [{"type": "text", "text": text}], "stop_reason": "end_turn"}
    if usage:
        body["usage"] = {"input_tokens": 11, "output_tokens": 2}
    return Reply(json=body)


def event(kind: str, **data) -> str:
    return f"event: {kind}\ndata: " + json.dumps({"type": kind, **data})


STREAM = [
    event("message_start", message={"id": "msg_1", "model": "claude-test-1", "content": [],
                                    "usage": {"input_tokens": 10, "output_tokens": 1}}),
    event("content_block_start", index=0, content_block={"type": "text", "text": ""}),
    event("ping"),
    event("content_block_delta", index=0, delta={"type": "text_delta", "text": "Hel"}),
    event("content_block_delta", index=0, delta={"type": "text_delta", "text": "lo"}),
    event("content_block_stop", index=0),
    event("message_delta", delta={"stop_reason": "end_turn"}, usage={"output_tokens": 4}),
    event("message_stop"),
]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ANTHROPIC_API_KEY", "CHIEF_ANTHROPIC_BASE_URL", "CHIEF_ANTHROPIC_MODEL",
                 "CHIEF_ANTHROPIC_TIMEOUT_S", "CHIEF_ANTHROPIC_MAX_ATTEMPTS"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def server() -> Iterator[StubServer]:
    with StubServer() as stub:
        yield stub


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def provider(server: StubServer, **kwargs) -> AnthropicProvider:
    kwargs.setdefault("sleep", Sleeps())
    return AnthropicProvider(api_key=KEY, base_url=server.url, **kwargs)


async def test_provider_anthropic_completes_with_usage(server: StubServer) -> None:
    server.replies.append(message_reply())
    completion = await provider(server).complete(MESSAGES, model="claude-x", temperature=0.1)
    assert (completion.text, completion.tokens_in, completion.tokens_out) == ("Hello!", 11, 2)
    assert completion.model == "claude-test-1" and not completion.tokens_estimated
    [seen] = server.seen
    assert seen.path == "/v1/messages"
    assert seen.headers["x-api-key"] == KEY and seen.headers["anthropic-version"] == API_VERSION
    assert seen.body == {"model": "claude-x", "system": "You are terse.", "max_tokens": 4096, "temperature": 0.1,
                         "messages": [{"role": "user", "content": "Say hello"}]}


def test_provider_anthropic_body_merges_roles_and_opens_with_the_user() -> None:
    body = request_body([{"role": "assistant", "content": "Hi, how can I help?"},
                         {"role": "user", "content": "a"}, {"role": "user", "content": "b"},
                         {"role": "system", "content": "s1"}, {"role": "system", "content": "s2"}],
                        "m", {"max_tokens": 10, "stop": "END"})
    assert body["system"] == "s1\n\ns2" and body["max_tokens"] == 10 and body["stop_sequences"] == ["END"]
    assert [t["role"] for t in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][2]["content"] == "a\n\nb"


async def test_provider_anthropic_estimates_tokens_without_usage(server: StubServer) -> None:
    server.replies.append(message_reply("x y z", usage=False))
    completion = await provider(server).complete(MESSAGES)
    assert completion.tokens_estimated and completion.tokens_out == 4


async def test_provider_anthropic_streams_tokens_as_they_arrive(server: StubServer) -> None:
    server.replies.append(Reply(events=STREAM))
    tokens: list[str] = []

    async def on_token(text: str) -> None:
        tokens.append(text)

    completion = await provider(server).complete(MESSAGES, on_token=on_token)
    assert tokens == ["Hel", "lo"]
    assert (completion.text, completion.tokens_in, completion.tokens_out) == ("Hello", 10, 4)
    assert server.seen[0].body["stream"] is True


async def test_provider_anthropic_error_event_in_a_stream(server: StubServer) -> None:
    server.replies.append(Reply(events=[STREAM[0], event("error", error={"type": "overloaded_error",
                                                                         "message": "Overloaded"})]))
    with pytest.raises(ProviderError, match="overloaded") as caught:
        await provider(server, max_attempts=1).complete(MESSAGES, on_token=lambda t: None)
    assert caught.value.retryable


async def test_provider_anthropic_429_waits_what_retry_after_says(server: StubServer) -> None:
    server.replies.extend([Reply(status=429, headers={"retry-after": "1.5"},
                                 json={"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}),
                           message_reply()])
    sleeps = Sleeps()
    completion = await provider(server, sleep=sleeps).complete(MESSAGES)
    assert completion.text == "Hello!" and sleeps.calls == [1.5]


async def test_provider_anthropic_529_overloaded_is_retried(server: StubServer) -> None:
    server.replies.extend([Reply(status=529, json={"type": "error", "error": {"type": "overloaded_error",
                                                                               "message": "Overloaded"}}),
                           message_reply()])
    completion = await provider(server).complete(MESSAGES)
    assert completion.text == "Hello!" and len(server.seen) == 2


async def test_provider_anthropic_429_beyond_max_wait_is_raised(server: StubServer) -> None:
    server.replies.append(Reply(status=429, headers={"retry-after": "600"}, json={}))
    with pytest.raises(RateLimited):
        await provider(server, max_wait_s=5).complete(MESSAGES)


async def test_provider_anthropic_500_then_success(server: StubServer) -> None:
    server.replies.extend([Reply(status=500, json={"type": "error", "error": {"type": "api_error",
                                                                               "message": "Internal"}}),
                           message_reply()])
    completion = await provider(server).complete(MESSAGES)
    assert completion.text == "Hello!" and len(server.seen) == 2


async def test_provider_anthropic_timeout(server: StubServer) -> None:
    server.replies.append(Reply(hang=True))
    with pytest.raises(ProviderError) as caught:
        await provider(server, timeout_s=0.3, max_attempts=1).complete(MESSAGES)
    assert caught.value.retryable and "within 0.3 s" in str(caught.value)


async def test_provider_anthropic_401_names_the_variable_never_the_key(server: StubServer) -> None:
    server.default = Reply(status=401, json={"type": "error", "error": {"type": "authentication_error",
                                                                         "message": f"invalid x-api-key {KEY}"}})
    with pytest.raises(ProviderError) as caught:
        await provider(server).complete(MESSAGES)
    assert not caught.value.retryable and "ANTHROPIC_API_KEY" in str(caught.value)
    assert KEY not in str(caught.value) and len(server.seen) == 1


async def test_provider_anthropic_malformed_json(server: StubServer) -> None:
    server.replies.append(Reply(text="{\"content\": [unterminated"))
    with pytest.raises(ProviderError) as caught:
        await provider(server).complete(MESSAGES)
    assert not caught.value.retryable and "malformed JSON" in str(caught.value)


async def test_provider_anthropic_malformed_json_in_a_stream(server: StubServer) -> None:
    server.replies.append(Reply(events=["event: content_block_delta\ndata: {oops"]))
    with pytest.raises(ProviderError, match="malformed JSON in the stream"):
        await provider(server).complete(MESSAGES, on_token=lambda t: None)


async def test_provider_anthropic_unconfigured_says_what_to_set() -> None:
    with pytest.raises(ProviderNotConfigured, match="ANTHROPIC_API_KEY"):
        await AnthropicProvider().complete(MESSAGES)
    assert "not configured" in AnthropicProvider().status()
