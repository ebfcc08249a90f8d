"""The message bus: `Bus` interface, the in-process `LocalBus` (and `RedisBus` when Redis is configured)."""

from .base import Bus, Delivery
from .local import LocalBus

__all__ = ["Bus", "Delivery", "LocalBus"]
