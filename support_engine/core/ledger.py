"""De-duplication keys: at least once in, exactly once in effect.

Every device-side message names itself: a device reading by (device, boot_id, seq), a gateway
batch by (gateway, boot_id, seq), a contact by its id, a field status by (work order, seq).
"""

from __future__ import annotations

from collections.abc import Iterable

from contracts.codec import BatchView
from contracts.messages import Contact, DeviceEvent, Message, Telemetry, WorkOrderStatus

__all__ = ["Key", "Ledger", "key_of"]

Key = tuple[str, str, int, int]


def key_of(message: Message | BatchView) -> Key | None:
    """The de-duplication key of ``message``, or None for messages that are idempotent anyway."""
    if isinstance(message, BatchView):
        return ("batch", message.gateway_id, message.boot_id, message.seq)
    if isinstance(message, Telemetry):
        return ("telemetry", message.device_id, message.boot_id, message.seq)
    if isinstance(message, DeviceEvent):
        return ("event", message.device_id, message.boot_id, message.seq)
    if isinstance(message, Contact):
        return ("contact", message.contact_id, 0, 0)
    if isinstance(message, WorkOrderStatus):
        return ("status", message.work_order_id, 0, message.seq)
    return None


class Ledger:
    """The keys of every message taken in (loaded from storage on start)."""

    def __init__(self, keys: Iterable[Key] = ()) -> None:
        self._seen: set[Key] = set(keys)

    def __len__(self) -> int:
        return len(self._seen)

    def __contains__(self, key: object) -> bool:
        return key in self._seen

    def add(self, key: Key) -> bool:
        """Record ``key``; return False if it was already there (a duplicate)."""
        if key in self._seen:
            return False
        self._seen.add(key)
        return True
