"""Driving the real ``klaw`` executable in subprocesses, and writing small projects for it."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import selectors
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

import psutil

if TYPE_CHECKING:
    import httpx

KLAW = Path(sys.executable).parent / "klaw"
T = TypeVar("T")

# Generous: the suite shares the machine with other test runs and benchmarks.
COMMAND_TIMEOUT = 120.0
WAIT = 60.0


def flat(text: str) -> str:
    """``text`` with every run of whitespace made one space (rich wraps long messages)."""
    return " ".join(text.split())


def env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of every ``klaw`` process: no stray ``KLAW_*`` settings, a wide
    console so rich does not wrap messages, no colours; then ``extra``."""
    values = {k: v for k, v in os.environ.items() if not k.startswith("KLAW_")}
    values.update(COLUMNS="200", NO_COLOR="1", TERM="dumb")
    values.update(extra or {})
    return values


@dataclass
class Result:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def out(self) -> str:
        """stdout and stderr together, whitespace flattened."""
        return flat(self.stdout + "\n" + self.stderr)

    def json(self) -> Any:
        try:
            return json.loads(self.stdout)
        except ValueError as exc:
            raise AssertionError(f"not JSON: {self}") from exc

    def __str__(self) -> str:
        return (
            f"klaw {' '.join(self.args)} -> exit {self.returncode}\n"
            f"--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"
        )


def klaw(
    cwd: Path,
    *args: str,
    timeout: float = COMMAND_TIMEOUT,
    extra_env: Mapping[str, str] | None = None,
) -> Result:
    """Run ``klaw ARGS`` in ``cwd`` to the end (``extra_env`` added to its environment)."""
    done = subprocess.run(
        [str(KLAW), *args],
        cwd=cwd,
        env=env(extra_env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Result(tuple(args), done.returncode, done.stdout, done.stderr)


class Background:
    """``klaw ARGS`` started in its own session (like a terminal's foreground job), so a
    Ctrl-C can be sent to its whole process group."""

    def __init__(self, cwd: Path, *args: str, extra_env: Mapping[str, str] | None = None) -> None:
        self.args = tuple(args)
        self.proc = subprocess.Popen(
            [str(KLAW), *args],
            cwd=cwd,
            env=env(extra_env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def ctrl_c(self) -> None:
        """What a terminal does on Ctrl-C: SIGINT to the foreground process group."""
        os.killpg(self.proc.pid, signal.SIGINT)

    def first_line(self, timeout: float = WAIT) -> str:
        """The first line it prints (bounded wait): a service's "listening on ..." line."""
        assert self.proc.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self.proc.stdout, selectors.EVENT_READ)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if selector.select(timeout=0.1):
                    return self.proc.stdout.readline().strip()
                if self.proc.poll() is not None:
                    break
        out, err = self.proc.communicate(timeout=WAIT) if self.proc.poll() is not None else ("", "")
        raise AssertionError(
            f"klaw {' '.join(self.args)} printed nothing (exit {self.proc.poll()}):\n{out}{err}"
        )

    def stop(self, sig: int) -> tuple[int, str, str]:
        """Send ``sig``; its exit code and output once it has ended (bounded)."""
        self.proc.send_signal(sig)
        out, err = self.proc.communicate(timeout=WAIT)
        return self.proc.returncode, out, err

    def finish(self, timeout: float = WAIT) -> Result:
        """Wait (bounded) for the process to exit; its output."""
        stdout, stderr = self.proc.communicate(timeout=timeout)
        return Result(self.args, self.proc.returncode, stdout, stderr)

    def kill(self) -> None:
        """Clean-up after a failed test: nothing may outlive it."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.communicate(timeout=WAIT)


@contextlib.contextmanager
def service(cwd: Path, *args: str, **extra_env: str) -> Iterator[Background]:
    """``klaw ARGS --port 0`` (``server``, ``api``) running until the block ends, then killed
    with anything it started."""
    process = Background(cwd, *args, "--port", "0", extra_env=extra_env)
    try:
        yield process
    finally:
        process.kill()


def wait_for(what: str, check: Callable[[], T | None], timeout: float = WAIT) -> T:
    """Poll ``check`` until it returns something truthy, at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout:g} s waiting for {what}")
        time.sleep(0.05)


def gone(pid: int) -> bool:
    """The process no longer runs (it exited; a zombie counts as exited)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def write_project(root: Path, modules: dict[str, str], *, name: str = "t") -> Path:
    """A project in ``root``: ``klaw.toml`` naming ``wf.<module>`` for each module, whose
    source is given (dedented)."""
    root.mkdir(parents=True, exist_ok=True)
    names = ", ".join(f'"wf.{m}"' for m in modules)
    (root / "klaw.toml").write_text(f'[project]\nname = "{name}"\nmodules = [{names}]\n')
    (root / "wf").mkdir(exist_ok=True)
    (root / "wf" / "__init__.py").write_text("")
    for module, source in modules.items():
        (root / "wf" / f"{module}.py").write_text(textwrap.dedent(source).lstrip("\n"))
    return root


def line_of(path: Path, text: str) -> int:
    """The 1-based number of the first line of ``path`` containing ``text``."""
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if text in line:
            return number
    raise AssertionError(f"{text!r} not in {path}")


def assert_error(result: Result, code: int, *needles: str) -> None:
    """A clean error: exit ``code``, every needle in the output, no Python traceback."""
    assert result.returncode == code, str(result)
    assert "Traceback" not in result.stderr, str(result)
    assert "error:" in result.stderr, str(result)
    for needle in needles:
        assert flat(needle) in result.out, f"{needle!r} missing from:\n{result}"


def run_id_of(result: Result) -> str:
    """The run id printed by ``klaw run`` (table output: ``run ID STATE in ...``)."""
    for line in result.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0] == "run":
            return parts[1]
    raise AssertionError(f"no run id in:\n{result}")


def attempts_by_stage(show: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """``runs show -o json`` attempts grouped by stage, in attempt order."""
    found: dict[str, list[dict[str, Any]]] = {}
    for attempt in show["attempts"]:
        found.setdefault(attempt["stage"], []).append(attempt)
    for attempts in found.values():
        attempts.sort(key=lambda a: a["attempt"])
    return found


def wait_for_stage(
    cwd: Path, run: Background, workflow: str, stage: str, state: str = "running"
) -> str:
    """Wait until ``workflow`` has a running run whose ``stage`` is in ``state``; its run id.
    Polls ``runs list`` and ``runs show`` (bounded)."""

    def running_run() -> str | None:
        if run.proc.poll() is not None:
            raise AssertionError(f"klaw run ended early:\n{run.finish()}")
        listed = klaw(
            cwd, "runs", "list", "--workflow", workflow, "--state", "running", "-o", "json"
        )
        assert listed.returncode == 0, str(listed)
        runs = listed.json()
        return runs[0]["run_id"] if runs else None

    run_id = wait_for(f"a running run of {workflow}", running_run)

    def stage_in_state() -> bool:
        show = klaw(cwd, "runs", "show", run_id, "-o", "json")
        assert show.returncode == 0, str(show)
        states = {a["stage"]: a["state"] for a in show.json()["attempts"]}
        return states.get(stage) == state

    wait_for(f"stage {stage} of run {run_id} {state}", stage_in_state)
    return run_id


class Dev:
    """``klaw dev -o json`` running in ``cwd``; its output read as it comes (bounded)."""

    def __init__(self, cwd: Path, extra_env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [str(KLAW), "dev", "--port", "0", "--api-port", "0", "-o", "json"],
            cwd=cwd,
            env=env(extra_env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.stderr: list[str] = []
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, None), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.stderr), daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        try:
            first = self.lines.get(timeout=WAIT)
        except queue.Empty:
            raise AssertionError(f"klaw dev printed nothing: {''.join(self.stderr)}") from None
        self.info: dict[str, Any] = json.loads(first)

    def _read(self, stream: IO[str], into: list[str] | None) -> None:
        for line in stream:
            if into is None:
                self.lines.put(line)
            else:
                into.append(line)

    def api(self) -> httpx.Client:
        import httpx

        token = self.info["token"]
        return httpx.Client(
            base_url=self.info["api"], headers={"Authorization": f"Bearer {token}"}, timeout=WAIT
        )

    def workflows(self) -> list[str]:
        with self.api() as client:
            answer = client.get("/api/v1/workflows")
        assert answer.status_code == 200, answer.text
        return [w["name"] for w in answer.json()["workflows"]]

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=WAIT)
        for reader in self._readers:
            reader.join(timeout=WAIT)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=WAIT)
