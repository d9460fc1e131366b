"""Experiments: turn runs into a decision — paired policy comparisons, sweeps, scores and a report.

- :mod:`experiments.rundata` — one finished run as the experiments see it: the world's records and
  the engine's own records read back from its database;
- :mod:`experiments.scorecard` — the engine's alerts and cases scored against the ground truth;
- :mod:`experiments.claims` — every fix the engine claimed (remote, visit, delivery) against the truth;
- :mod:`experiments.ledger` — the cost ledger from the scenario's prices;
- :mod:`experiments.checklist` — the effortless-service checklist as measured shares;
- :mod:`experiments.assess` — all of the above for one run, the block ``result.json`` carries;
- :mod:`experiments.stats` — intervals, paired differences, bootstrap, Holm, sequential precision;
- :mod:`experiments.plan`, :mod:`experiments.policies`, :mod:`experiments.overrides` — what to run;
- :mod:`experiments.execute` — replications in worker processes or on a Dask cluster, resumable;
- :mod:`experiments.compare` — the comparison document from the replications;
- :mod:`experiments.report` — the self-contained HTML report.

It sits above :mod:`harness` (each replication is one harness run) and never touches a broker
itself. Importing it starts and connects nothing.
"""
