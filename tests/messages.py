"""Hand-built messages shared by the engine's tests (strategies live in tests/strategies.py)."""

from __future__ import annotations

from contracts.messages import WorkOrderStatus

__all__ = ["status"]


def status(wo: str, device: str, what: str, ts: float, seq: int, visit: int = 1) -> WorkOrderStatus:
    """A technician's report ``what`` on work order ``wo``."""
    return WorkOrderStatus(
        work_order_id=wo,
        device_id=device,
        ts=ts,
        seq=seq,
        status=what,  # type: ignore[arg-type]
        technician_id="tech-1",
        visit=visit,
    )
