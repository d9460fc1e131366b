"""The engine's read-only HTTP API, its web console and ``/metrics``, served on a thread of the engine process.

Nothing here touches the engine core. Stored records come from the engine's database, SQLite or
PostgreSQL, through a read-only connection a request from the pool of its
:class:`~support_engine.database.Database` (the engine's own, when it passes it: one SQLAlchemy
engine on PostgreSQL; SQLite's WAL lets readers run beside the engine's writer), queries built with
SQLAlchemy Core on :mod:`support_engine.schema`'s tables; live figures (twins, counters, rollouts)
come from the :class:`~support_engine.metrics.LiveSnapshot` the service publishes after each commit.

=============================  ====================================================================
module                         holds
=============================  ====================================================================
:mod:`.app`                    :func:`create_app`: routes, console, docs, token, error answers
:mod:`.routes`                 the JSON routes, their filters and paging
:mod:`.queries`                :class:`~.queries.Reader`: the reads, as response models
:mod:`.fleet`                  the devices, their states, the twin of one
:mod:`.timeline`               one case in full, with its timeline
:mod:`.docs`                   Swagger UI at ``/docs`` from packaged files
:mod:`.models`                 response models, the paging envelope, ISO time fields
:mod:`.timebase`               engine seconds as ISO 8601 (wall clock, or simulated in event time)
:mod:`.server`                 :class:`HttpApi`: uvicorn on a daemon thread
=============================  ====================================================================

The console's pages and files are in :mod:`support_engine.console`.
"""

from __future__ import annotations

from support_engine.api.app import OPEN_PATHS, create_app
from support_engine.api.models import CaseState, WorkOrderState
from support_engine.api.server import HttpApi

__all__ = ["OPEN_PATHS", "CaseState", "HttpApi", "WorkOrderState", "create_app"]
