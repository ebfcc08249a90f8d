"""The message bus: `Bus` interface, the in-process `LocalBus` and `RedisBus` (Redis Streams)."""

from .base import Bus, Delivery, send_lane
from .keys import Keys
from .local import LocalBus
from .redis import RedisBus

__all__ = ["Bus", "Delivery", "Keys", "LocalBus", "RedisBus", "send_lane"]
