"""Every error Chief raises on purpose, with messages a user can act on."""

from __future__ import annotations

from dataclasses import dataclass


class ChiefError(Exception):
    """Base class of Chief's own errors; the CLI prints these as one line."""


@dataclass(frozen=True)
class Problem:
    """One validation problem: what is wrong and where (file, line, step, field)."""

    message: str
    source: str = ""  # file name or "<string>"
    line: int | None = None
    step: str | None = None
    field: str | None = None

    def __str__(self) -> str:
        where = self.source or "<workflow>"
        if self.line is not None:
            where += f":{self.line}"
        if self.step:
            where += f": step '{self.step}'"
        if self.field:
            where += f": {self.field}"
        return f"{where}: {self.message}"


class WorkflowError(ChiefError):
    """A workflow could not be loaded or is invalid; `problems` lists every problem found."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems) or "invalid workflow")


class InputError(WorkflowError):
    """The inputs given to a run are missing, unknown or of the wrong type."""


class TemplateError(ChiefError):
    """A template or condition could not be rendered or evaluated."""


class WorkflowNotFound(ChiefError):
    """No workflow with that name or path."""


class ExecutionNotFound(ChiefError):
    """No execution with that id."""


class InvalidTransition(ChiefError):
    """The execution is not in a state that allows the requested action (e.g. resume a finished run)."""


class PluginError(ChiefError):
    """A plugin failed to load, register, or raised inside a hook."""


class UnknownAgent(ChiefError):
    """No registered agent has that name (or no agent declares that capability)."""


class UnknownProvider(ChiefError):
    """No registered provider has that name."""


class ProviderError(ChiefError):
    """A provider call failed; `retryable` says whether trying again may help."""

    def __init__(self, message: str, *, retryable: bool = True):
        self.retryable = retryable
        super().__init__(message)


class StepTimeout(ChiefError):
    """A step took longer than its `timeout_s`."""


class StoreError(ChiefError):
    """The database could not be read or written."""


class SchemaBehind(StoreError):
    """The database schema is older than this version of Chief; the message names the command to run."""


class BusError(ChiefError):
    """The message bus could not carry a message."""


class CircuitOpen(ProviderError):
    """A provider's circuit breaker is open: calls fail fast until a probe succeeds."""


class StoreUnavailable(StoreError):
    """The database could not be reached for longer than the retry bound (`CHIEF_DB_RETRY_S`); nothing was lost."""


class CopyError(StoreError):
    """`chief db copy` refused or failed; the message says why and what to run."""


class FileRefused(ChiefError):
    """An uploaded file was not accepted (type, size, archive expansion, unreadable); the message says why."""


class AuthError(ChiefError):
    """A chat user could not be created or signed in (e.g. the name is taken)."""


class PlanError(ChiefError):
    """No plan could be made for a chat request (no planner answered, and no fallback workflow)."""


class ProviderNotConfigured(ProviderError):
    """A provider was used without its settings (API key or base URL); the message names the variables to set."""

    def __init__(self, message: str):
        super().__init__(message, retryable=False)


class RateLimited(ProviderError):
    """The provider answered 429 (or 529 overloaded); `retry_after` is how long it asked us to wait, if it said."""

    def __init__(self, message: str, *, retry_after: float | None = None):
        self.retry_after = retry_after
        super().__init__(message, retryable=True)


class PriceTableError(ChiefError):
    """The price table (`CHIEF_PRICES`) could not be read or has a wrong entry."""


class ContextTooLarge(ProviderError):
    """A prompt does not fit the model's context window even with every optional part left out (never retried)."""

    def __init__(self, message: str, *, needed: int = 0, window: int = 0):
        self.needed = needed
        self.window = window
        super().__init__(message, retryable=False)


class ContextConfigError(ChiefError):
    """`CHIEF_CONTEXT_TOKENS` or `CHIEF_CONTEXT_POLICY` has a value Chief cannot use; the message names it."""
