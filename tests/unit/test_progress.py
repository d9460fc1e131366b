"""Progress off a terminal: plain lines, periodically and at the end, instead of a bar nobody sees."""

from __future__ import annotations

import io

from rich.console import Console
from rich.progress import Progress

from harness.progress import LineProgress, progress


def test_off_a_terminal_progress_is_lines_at_an_interval_and_at_the_end() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=False, width=200)
    bar = progress(console, "day")
    assert isinstance(bar, LineProgress)
    bar.every_s = 0.0  # every update says so
    with bar:
        task = bar.add_task("freezers · proactive · seed 7", total=90)
        bar.update(task, completed=30.5)
        bar.every_s = 3600.0  # then only the end does
        bar.update(task, completed=60)
        bar.update(task, completed=90)
    lines = buffer.getvalue().splitlines()
    assert lines[0].startswith("freezers · proactive · seed 7: day 30.5 of 90 (34 %), ")
    assert lines[-1].startswith("freezers · proactive · seed 7: day 90 of 90 (100 %), ")
    assert len(lines) == 2


def test_extra_fields_and_a_total_set_later_show_and_quiet_or_a_terminal_gives_a_bar() -> None:
    buffer = io.StringIO()
    bar = LineProgress(Console(file=buffer, force_terminal=False), "replications", every_s=0.0)
    task = bar.add_task("freezers · 2 arms", total=0, state="")
    bar.update(task, total=20)
    bar.update(task, completed=3, state="done 3 · running 2 · failed 0")
    assert "replications 3 of 20 (15 %)" in buffer.getvalue() and "· done 3 · running 2" in buffer.getvalue()
    assert isinstance(progress(Console(file=io.StringIO(), force_terminal=True), "day"), Progress)
    assert isinstance(progress(Console(file=io.StringIO()), "day", quiet=True), Progress)
