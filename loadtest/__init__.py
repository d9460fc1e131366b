"""Load tests of the ingestion path: a scenario's fleet as Locust users against a broker and the engine.

- :mod:`loadtest.fleet` — the fleet mix a scenario describes (products, counts, intervals, sensors);
- :mod:`loadtest.shapes` — soak, ramp, step and spike, by name and parameters, each ending in a drain;
- :mod:`loadtest.receipts` — sampled messages waiting for the engine's ``IngestAck``;
- :mod:`loadtest.outbox` — a device's messages not yet acknowledged, sent again after a reconnect;
- :mod:`loadtest.thresholds` — ``--fail-on`` conditions for CI;
- :mod:`loadtest.report` — Locust's statistics, the broker's and the engine's counters, reconciled;
- :mod:`loadtest.intervals` and :mod:`loadtest.timeline` — response times per request type and
  interval, and the run over time from them and the witnesses' samples;
- :mod:`loadtest.baseline` — ``--baseline``: the headline figures against an earlier run's;
- :mod:`loadtest.html` (with :mod:`loadtest.figures` and ``templates/loadtest.html``) and
  :mod:`loadtest.junit` — ``loadtest.html`` and ``--junit``;
- :mod:`loadtest.broker`, :mod:`loadtest.witnesses`, :mod:`loadtest.swarm` — Mosquitto for load, the
  engine process and the ``$SYS`` watch, Locust's processes;
- :mod:`loadtest.runner` and :mod:`loadtest.command` — ``sot loadtest``;
- :mod:`loadtest.locustfile` — the Locust users and the shape class; :mod:`loadtest.client` their MQTT client.

Only the locustfile and its client import Locust (importing it patches the standard library through
gevent), and only Locust's own processes load them. Importing this package connects nothing.
"""
