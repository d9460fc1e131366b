"""The engine's HTTP API and console (``sot engine --http``): the names its callers import.

The implementation is the :mod:`support_engine.api` package (JSON routes, queries, the server) and
:mod:`support_engine.console` (the pages). With a token, every route but the probes
(:data:`OPEN_PATHS`) answers 401 unless the request carries ``Authorization: Bearer TOKEN``.
"""

from __future__ import annotations

from support_engine.api import OPEN_PATHS, CaseState, HttpApi, WorkOrderState, create_app

__all__ = ["OPEN_PATHS", "CaseState", "HttpApi", "WorkOrderState", "create_app"]
