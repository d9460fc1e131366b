"""The harness: one (scenario, seed, policy) through a real broker and the real engine process.

- :mod:`harness.broker`, :mod:`harness.amqtt_broker` — start, probe and stop Mosquitto or amqtt;
- :mod:`harness.engine_process` — the engine as its own process;
- :mod:`harness.mqtt_transport` — the world's one connection to the broker;
- :mod:`harness.runner` — the event-time loop with the clock/ack barrier;
- :mod:`harness.live` — live mode, the world paced on the wall clock;
- :mod:`harness.lint` — ``sot lint``: the engine's rules dry-run (:mod:`harness.dry_run`) on the
  world's sensor models and judged (:mod:`harness.noise`: the healthy noise model in closed form);
- :mod:`harness.cli` — the ``sot`` command, the shell over the harness, :mod:`experiments` and
  :mod:`loadtest`.

It imports :mod:`sim` and :mod:`contracts` (and, for the lint only, the engine's sans-io twins);
:mod:`sim` imports none of it. Importing this package starts and connects nothing.
"""
