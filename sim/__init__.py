"""The simulated world: fleets of connected products and the people around them.

- :mod:`sim.scenario`, :mod:`sim.scenario_file` — scenario types and the one YAML reader;
- :mod:`sim.distributions`, :mod:`sim.streams` — lifetimes and keyed random streams (common random numbers);
- :mod:`sim.fleet` — a fleet as numpy arrays: failures, precursors, telemetry;
- :mod:`sim.calendar` — a fleet's failure calendar: times in arrays, a small heap of what falls due soon;
- :mod:`sim.registry` — the device registry the engine gets, made and written in chunks;
- :mod:`sim.people` — owners, the contact centre and field technicians;
- :mod:`sim.world` — one run's SimPy world, speaking only contracts;
- :mod:`sim.kpis` — KPIs from the world's records.

The world alone: broker control, the engine process, the event-time loop and the ``sot`` command
live in :mod:`harness`, which imports this package; this package imports neither it nor
:mod:`loadtest`.

Importing this package connects to nothing and reads no clock.
"""
