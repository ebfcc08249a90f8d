"""The streaming provider example of docs/plugins.md works as the page says."""

from __future__ import annotations

import re
import types
from pathlib import Path

import pytest

from chief.core.errors import ProviderNotConfigured, RateLimited
from chief.core.plugins import register_temporary
from chief.core.routing import ModelChoice, choose_route
from tests.fakes import fresh_plugins  # noqa: F401 - the fixture every test here uses

DOCS = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"
TITLE = "chief_streaming_provider.py"


pytestmark = pytest.mark.usefixtures("fresh_plugins")


def _example() -> types.ModuleType:
    [block] = [b for b in re.findall(r"```python\n(.*?)```", DOCS.read_text(), re.DOTALL)
               if b.startswith(f"# {TITLE}")]
    module = types.ModuleType("chief_streaming_provider")
    exec(compile(block, f"docs/plugins.md:{TITLE}", "exec"), module.__dict__)
    return module


async def test_provider_docs_streaming_example_streams() -> None:
    with register_temporary(_example()) as registry:
        assert registry.errors == []
        provider = registry.provider("typewriter")
        tokens: list[str] = []

        async def on_token(text: str) -> None:
            tokens.append(text)

        completion = await provider.complete([{"role": "user", "content": "one two three"}], on_token=on_token)
        assert tokens == ["one", " two", " three"] and completion.text == "one two three"
        assert completion.tokens_estimated
        with pytest.raises(RateLimited) as caught:
            await provider.complete([{"role": "user", "content": "quota?"}])
        assert caught.value.retry_after == 2.0 and caught.value.retryable
        with pytest.raises(ProviderNotConfigured):
            await provider.complete([{"role": "user", "content": "key?"}])
        route = choose_route(registry, None, None, default=ModelChoice("typewriter:typewriter-slow"))
        assert (route.provider_name, route.model) == ("typewriter:typewriter-slow", "typewriter-slow")
        assert registry.owner_of("provider", "typewriter:typewriter-slow") == registry.owner_of("provider", "typewriter")
