"""Output capture per attempt, while several stages print at once."""

from __future__ import annotations

import logging
import sys
import threading

from klaw.execution.capture import capture


def test_each_thread_gets_its_own_lines() -> None:
    results: dict[str, list[str]] = {}
    barrier = threading.Barrier(4)

    def work(name: str) -> None:
        with capture("r", name, 1) as log:
            barrier.wait()
            for i in range(50):
                print(f"{name} {i}")
                sys.stderr.write(f"{name} err\n")
        results[name] = [rec.line for rec in log.records if rec.stream == "stdout"]

    threads = [threading.Thread(target=work, args=(f"s{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for name, lines in results.items():
        assert lines == [f"{name} {i}" for i in range(50)]


def test_partial_lines_and_logging_levels() -> None:
    with capture("r", "s", 2) as log:
        sys.stdout.write("no newline")
        logging.getLogger("user").error("broken %s", "thing")
    lines = [(r.stream, r.line, r.level, r.attempt) for r in log.records]
    assert ("log", "user: broken thing", "ERROR", 2) in lines
    assert ("stdout", "no newline", None, 2) in lines


def test_outside_a_stage_output_goes_to_the_real_stream(capsys: object) -> None:
    with capture("r", "s", 1) as log:
        print("inside")
    print("after")
    assert [r.line for r in log.records] == ["inside"]
    assert "after" in capsys.readouterr().out  # type: ignore[attr-defined]
