"""Token and cost accounting: totals per execution and per conversation from the ledger's step rows.

What is counted: every recorded attempt of every task (the ledger keeps one row per
(execution, task, attempt)); tokens spent by a failed attempt were paid for too, so a retried
step counts each attempt that reported tokens. Counts that a provider did not report but
were estimated (`tokens_estimated`) make the total "estimated" as well (shown with a `~`).

Cost is computed when a price table is configured: `CHIEF_PRICES` names a YAML or JSON file

    gpt-4o-mini: {input_per_mtok: 0.15, output_per_mtok: 0.60}
    "anthropic:claude-3-5-haiku-latest": {input_per_mtok: 0.80, output_per_mtok: 4.00}

(prices per million tokens, in the currency of your choice; a key may be `provider:model` to
tell apart the same model name at two providers). Tokens of a model with no price are
counted but make the cost "partial" (`Usage.unpriced_models`).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import PriceTableError

CONVERSATION_EXECUTIONS_LIMIT = 10_000


def estimate_tokens(text: str) -> int:
    """A rough token count for providers that report none, and for fitting prompts into a context window.

    The larger of "4 tokens per 3 words" (prose) and "1 token per 4 characters" (code, JSON, CSV and
    other text with few spaces, where counting words would miss most of the tokens).
    """
    return max(math.ceil(len(text.split()) * 4 / 3), math.ceil(len(text) / 4))


@dataclass(frozen=True)
class Price:
    """What a million input / output tokens of one model cost."""

    input_per_mtok: float
    output_per_mtok: float

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        """The cost of that many tokens."""
        return (tokens_in * self.input_per_mtok + tokens_out * self.output_per_mtok) / 1_000_000


@dataclass
class PriceTable:
    """Prices by model name (or `provider:model`)."""

    prices: dict[str, Price] = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], source: str = "price table") -> PriceTable:
        """Build from `{model: {input_per_mtok, output_per_mtok}}`; a wrong entry is a `PriceTableError`."""
        if not isinstance(data, Mapping):
            raise PriceTableError(f"{source}: expected a mapping of model -> prices, got {type(data).__name__}")
        prices: dict[str, Price] = {}
        for model, entry in data.items():
            if not isinstance(entry, Mapping) or set(entry) - {"input_per_mtok", "output_per_mtok"}:
                raise PriceTableError(
                    f"{source}: '{model}' must be {{input_per_mtok: N, output_per_mtok: N}}, got {entry!r}"
                )
            try:
                prices[str(model)] = Price(float(entry.get("input_per_mtok", 0)), float(entry.get("output_per_mtok", 0)))
            except (TypeError, ValueError):
                raise PriceTableError(f"{source}: '{model}' has a price that is not a number: {entry!r}") from None
        return cls(prices)

    @classmethod
    def load(cls, path: str | Path) -> PriceTable:
        """Read a YAML or JSON price file."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise PriceTableError(f"cannot read the price table {path}: {exc.strerror}") from exc
        try:
            data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (ValueError, yaml.YAMLError) as exc:
            kind = "JSON" if path.suffix == ".json" else "YAML"
            raise PriceTableError(f"the price table {path} is not valid {kind}: "
                                  f"{' '.join(str(exc).split())[:200]}") from exc
        return cls.from_mapping(data or {}, source=str(path))

    @classmethod
    def from_env(cls) -> PriceTable | None:
        """The table named by `CHIEF_PRICES`, or None when it is not set."""
        path = os.environ.get("CHIEF_PRICES", "").strip()
        return cls.load(path) if path else None

    def price(self, provider: str | None, model: str | None) -> Price | None:
        """The price of `model` at `provider` (`provider:model` first, then the bare model name)."""
        if not model:
            return None
        if provider and f"{provider}:{model}" in self.prices:
            return self.prices[f"{provider}:{model}"]
        return self.prices.get(model)


@dataclass
class Usage:
    """Token (and cost) totals over some step rows."""

    tokens_in: int = 0
    tokens_out: int = 0
    estimated: bool = False  # some counts were estimated, not reported by the provider
    calls: int = 0  # attempts that reported tokens
    cost: float | None = None  # None: no price table configured
    unpriced_models: list[str] = field(default_factory=list)  # counted, but no price known
    by_model: dict[str, dict[str, int]] = field(default_factory=dict)  # "provider/model" -> {tokens_in, tokens_out}

    @property
    def tokens(self) -> int:
        """Input plus output tokens."""
        return self.tokens_in + self.tokens_out

    def add(self, other: Usage) -> None:
        """Fold `other` into this total."""
        self.tokens_in += other.tokens_in
        self.tokens_out += other.tokens_out
        self.estimated = self.estimated or other.estimated
        self.calls += other.calls
        if other.cost is not None:
            self.cost = (self.cost or 0.0) + other.cost
        for name in other.unpriced_models:
            if name not in self.unpriced_models:
                self.unpriced_models.append(name)
        for key, counts in other.by_model.items():
            mine = self.by_model.setdefault(key, {"tokens_in": 0, "tokens_out": 0})
            mine["tokens_in"] += counts["tokens_in"]
            mine["tokens_out"] += counts["tokens_out"]

    def summary(self) -> str:
        """One line, e.g. `1,204 in / 310 out tokens (~estimated), cost 0.0012 (partial: no price for x)`."""
        mark = "~" if self.estimated else ""
        text = f"{mark}{self.tokens_in:,} in / {mark}{self.tokens_out:,} out tokens"
        if self.estimated:
            text += " (~ estimated)"
        if self.cost is not None:
            text += f", cost {self.cost:.4f}"
            if self.unpriced_models:
                text += f" (partial: no price for {', '.join(self.unpriced_models)})"
        return text

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form (for `--json` and the chat)."""
        return {"tokens_in": self.tokens_in, "tokens_out": self.tokens_out, "estimated": self.estimated,
                "calls": self.calls, "cost": self.cost, "unpriced_models": list(self.unpriced_models),
                "by_model": {k: dict(v) for k, v in self.by_model.items()}}


def usage_of_steps(steps: Iterable[Any], prices: PriceTable | None = None) -> Usage:
    """Totals over step rows (`StepRecord`s: every attempt counts); cost when `prices` is given."""
    usage = Usage(cost=0.0 if prices is not None else None)
    for step in steps:
        if step.tokens_in is None and step.tokens_out is None:
            continue
        tin, tout = int(step.tokens_in or 0), int(step.tokens_out or 0)
        usage.tokens_in += tin
        usage.tokens_out += tout
        usage.calls += 1
        usage.estimated = usage.estimated or bool(step.tokens_estimated)
        key = f"{step.provider or '?'}/{step.model or '?'}"
        counts = usage.by_model.setdefault(key, {"tokens_in": 0, "tokens_out": 0})
        counts["tokens_in"] += tin
        counts["tokens_out"] += tout
        if prices is not None:
            price = prices.price(step.provider, step.model)
            if price is None:
                if key not in usage.unpriced_models:
                    usage.unpriced_models.append(key)
            else:
                usage.cost = (usage.cost or 0.0) + price.cost(tin, tout)
    return usage


async def execution_usage(store: Any, execution_id: str, prices: PriceTable | None = None) -> Usage:
    """Totals of one execution (every attempt of every task)."""
    return usage_of_steps(await store.list_steps(execution_id), prices)


async def conversation_usage(store: Any, conversation_id: str, prices: PriceTable | None = None) -> Usage:
    """Totals of every execution started from one conversation."""
    total = Usage(cost=0.0 if prices is not None else None)
    for record in await store.list_executions(conversation_id=conversation_id, limit=CONVERSATION_EXECUTIONS_LIMIT):
        total.add(await execution_usage(store, record.id, prices))
    return total
