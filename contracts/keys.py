"""Every device-side message names itself: the key by which it is taken in at most once.

A device reading by (device, boot_id, seq), a gateway batch by (gateway, boot_id, seq), a contact
by its id, a field status by (work order, seq). The engine de-duplicates on it; a fault test
counts on it which messages the world sent and which the engine took in.
"""

from __future__ import annotations

from contracts.codec import BatchView
from contracts.messages import Contact, DeviceEvent, GatewayBatch, Message, Telemetry, WorkOrderStatus

__all__ = ["Key", "key_of"]

Key = tuple[str, str, int, int]
"""(kind, source, boot_id, seq)."""


def key_of(message: Message | BatchView) -> Key | None:
    """The de-duplication key of ``message``, or None for messages that are idempotent anyway."""
    if isinstance(message, (BatchView, GatewayBatch)):
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
