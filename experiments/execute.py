"""Run replications: each a full harness run (its own broker and engine process), kept on disk.

Each replication starts its own broker and engine rather than sharing one broker with topic
prefixes: a replication that breaks its broker spoils no other, the runs do not queue behind one
single-threaded Mosquitto, and a replication runs the same way on a Dask worker on another machine,
where no shared broker would be reachable anyway. Starting a broker costs well under a second.

A replication runs in a temporary directory on its worker and comes back as its files (result.json
with the scorecard, ledger and checklist; events.csv, ground_truth.csv, timeseries.csv, …), which
the caller writes under ``DIR/replications/NAME/`` — first under a ``.partial-`` name, then renamed,
so a killed experiment leaves only whole replications. A re-run reuses every replication whose key
matches and runs the rest. A failed replication is reported with its log's tail; the others go on.
"""

from __future__ import annotations

import contextlib
import json
import math
import multiprocessing
import os
import shutil
import signal
import tempfile
import traceback
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from experiments.plan import ReplicationSpec
from harness.errors import HarnessError
from harness.outputs import write_run
from sim.errors import ScenarioError
from sim.scenario_file import validate_data

__all__ = ["Done", "execute", "load_done", "run_replication"]

RUN_FILES = ("result.json", "events.csv", "ground_truth.csv", "connectivity.csv", "timeseries.csv")
LOG_TAIL_LINES = 30


@dataclass(frozen=True)
class Done:
    """A finished replication: where it is stored, or why it failed."""

    spec: ReplicationSpec
    ok: bool
    path: Path | None = None
    error: str = ""
    log_tail: str = ""
    reused: bool = False


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    return ""


def run_replication(spec: ReplicationSpec, broker_kind: str = "auto") -> dict[str, Any]:
    """Run one replication in a scratch directory; return its files and figures (plain data).

    Never raises for a run that fails: the answer says ``ok: false`` with the error and log tail.
    """
    from experiments.assess import assess_outcome
    from harness.runner import run_scenario

    with tempfile.TemporaryDirectory(prefix="sot-replication-") as scratch:
        work = Path(scratch)
        try:
            scenario, problems = validate_data(spec.scenario)
            if scenario is None:
                raise ScenarioError(f"replication {spec.arm}", problems)
            outcome = run_scenario(scenario, seed=spec.seed, policy=spec.policy, workdir=work, broker_kind=broker_kind)  # type: ignore[arg-type]
            result = outcome.result
            result.update(assess_outcome(scenario, result, outcome.records, work))
            result["replication"] = {"arm": spec.arm, "index": spec.index, "seed": spec.seed, "key": spec.key}
            write_run(work, result, outcome.records)
            files = {name: (work / name).read_bytes() for name in RUN_FILES if (work / name).exists()}
            start = scenario.warmup_s
            restore_h = [
                (i.restored_s - i.onset_s) / 3600.0
                for i in outcome.records.incidents
                if i.onset_s >= start and not math.isnan(i.restored_s)
            ]
            return {"ok": True, "files": files, "restore_hours": restore_h}
        except Exception as exc:  # the boundary of a replication: whatever went wrong is reported, not raised
            detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            expected = isinstance(exc, (HarnessError, ScenarioError, OSError))
            log = _tail(work / "engine.log") if expected else traceback.format_exc()
            return {"ok": False, "error": detail, "log_tail": log or traceback.format_exc(limit=6)}


def _store(root: Path, spec: ReplicationSpec, answer: dict[str, Any]) -> Path:
    final = root / spec.dirname
    partial = root / f".partial-{spec.dirname}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    for name, blob in answer["files"].items():
        (partial / name).write_bytes(blob)
    meta = {**asdict(spec), "restore_hours": [round(h, 4) for h in answer["restore_hours"]]}
    meta.pop("scenario")
    (partial / "replication.json").write_text(json.dumps(meta) + "\n", encoding="utf-8")
    shutil.rmtree(final, ignore_errors=True)
    partial.rename(final)
    return final


def load_done(root: Path, spec: ReplicationSpec) -> Path | None:
    """The stored replication for ``spec`` if it is complete and its key matches, else None."""
    meta = root / spec.dirname / "replication.json"
    try:
        if (
            json.loads(meta.read_text(encoding="utf-8")).get("key") == spec.key
            and (meta.parent / "result.json").exists()
        ):
            return meta.parent
    except (OSError, ValueError):
        pass
    return None


Listener = Callable[[str, ReplicationSpec, Done | None], None]


def execute(
    specs: Iterable[ReplicationSpec],
    root: Path,
    *,
    jobs: int = 1,
    scheduler: str | None = None,
    broker_kind: str = "auto",
    on_event: Listener | None = None,
) -> list[Done]:
    """Run every spec not already stored under ``root``; return all of them, reused or new, in order.

    ``on_event(kind, spec, done)`` is called with ``reused``, ``started``, ``done`` and ``failed``.
    """
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(".partial-*"):
        shutil.rmtree(stale, ignore_errors=True)
    specs = list(specs)
    results: dict[str, Done] = {}
    todo = []
    for spec in specs:
        path = load_done(root, spec)
        if path is not None:
            results[spec.dirname] = Done(spec, True, path, reused=True)
            if on_event:
                on_event("reused", spec, results[spec.dirname])
        else:
            todo.append(spec)
    runner = _dask if scheduler else _pool
    for spec, answer in runner(todo, jobs=jobs, scheduler=scheduler, broker_kind=broker_kind, on_event=on_event):
        if answer["ok"]:
            done = Done(spec, True, _store(root, spec, answer))
        else:
            done = Done(spec, False, error=answer["error"], log_tail=answer["log_tail"])
        results[spec.dirname] = done
        if on_event:
            on_event("done" if done.ok else "failed", spec, done)
    return [results[s.dirname] for s in specs]


Answers = Iterator[tuple[ReplicationSpec, dict[str, Any]]]


def _worker_init() -> None:
    """A pool worker leaves Ctrl-C to its parent and stops its run (broker, engine) on SIGTERM."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _stop)


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _pool(
    todo: list[ReplicationSpec], *, jobs: int, scheduler: str | None, broker_kind: str, on_event: Listener | None
) -> Answers:
    """Run on a pool of spawned worker processes, ``jobs`` at a time.

    A worker that dies (killed, out of memory) breaks the whole pool: the replications it was
    running with are run again once on a new pool; one that was in flight at two breaks fails.
    """
    if not todo:
        return
    context = multiprocessing.get_context("spawn")  # no inherited threads or sockets in the workers
    queue = list(todo)
    breaks: dict[str, int] = {}
    while queue:
        pool = ProcessPoolExecutor(
            max_workers=max(1, min(jobs, len(queue))), mp_context=context, initializer=_worker_init
        )
        running: dict[Future[dict[str, Any]], ReplicationSpec] = {}
        try:
            while queue or running:
                while queue and len(running) < jobs:
                    spec = queue.pop(0)
                    running[pool.submit(run_replication, spec, broker_kind)] = spec
                    if on_event and spec.dirname not in breaks:
                        on_event("started", spec, None)
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                broken = [f for f in finished if isinstance(f.exception(), BrokenProcessPool)]
                for future in finished:
                    if future in broken:
                        continue
                    error = future.exception()
                    if error is None:
                        yield running.pop(future), future.result()
                    else:
                        yield running.pop(future), {"ok": False, "error": f"worker failed: {error!r}", "log_tail": ""}
                if broken:
                    for spec in running.values():
                        breaks[spec.dirname] = breaks.get(spec.dirname, 0) + 1
                        if breaks[spec.dirname] >= 2:
                            yield spec, {"ok": False, "error": "its worker process died twice", "log_tail": ""}
                        else:
                            queue.insert(0, spec)
                    running.clear()
                    break
        except BaseException:
            # Interrupted: stop the workers' runs (each stops its broker and engine) before the pool ends.
            for child in multiprocessing.active_children():
                with contextlib.suppress(OSError):
                    os.kill(child.pid or 0, signal.SIGTERM)
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)


def _dask(
    todo: list[ReplicationSpec], *, jobs: int, scheduler: str | None, broker_kind: str, on_event: Listener | None
) -> Answers:
    if not todo:
        return
    from distributed import Client, as_completed

    try:
        client = Client(scheduler, timeout="20s")  # type: ignore[no-untyped-call]
    except (OSError, ValueError, TypeError) as exc:
        raise HarnessError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from exc
    futures: dict[Any, ReplicationSpec] = {}
    try:
        for spec in todo:
            future = client.submit(
                run_replication, spec, broker_kind, pure=False, key=f"sot-{spec.dirname}-{uuid.uuid4().hex[:8]}"
            )
            futures[future] = spec
            if on_event:
                on_event("started", spec, None)
        for future in as_completed(futures):  # type: ignore[no-untyped-call]
            spec = futures[future]
            try:
                answer = future.result()
            except Exception as exc:
                answer = {"ok": False, "error": f"Dask task failed: {exc!r}", "log_tail": ""}
            yield spec, answer
    finally:
        client.cancel(list(futures))  # type: ignore[no-untyped-call]
        client.close()  # type: ignore[no-untyped-call]
