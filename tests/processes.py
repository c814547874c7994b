"""Helpers for tests that run the entry points as users do: real subprocesses on port 0, driven over HTTP.

A service bound to port 0 says where it listens on stderr ("api-gateway
listening on http://127.0.0.1:PORT"); the helpers read that line rather than
picking a free port first (which another process may take in between).
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

from tests.telemetry_fixtures import free_port

ROOT = Path(__file__).resolve().parent.parent
LISTENING = re.compile(r"(\S+) listening on (http://[^\s;]+)")
# The simulated latencies as shipped (payment 100-400 ms), and timeouts that never cut them.
# Payment's wait for inventory and the timeout scenario's hang: short, yet far enough apart that a success
# checkout on a loaded 2-core host is not timed out (0.3 s was not).
FAST_TIMEOUTS = {"FAKESVC_INVENTORY_TIMEOUT_S": "1", "FAKESVC_HANG_S": "1.5"}
REAL_LATENCY = {"FAKESVC_LATENCY_SCALE": "1", "FAKESVC_INVENTORY_TIMEOUT_S": "2", "FAKESVC_PAYMENT_TIMEOUT_S": "5"}
SHORT_NAMES = {"gateway": "api-gateway", "payment": "payment-service", "inventory": "inventory-service"}


class Process:
    """A running entry point, its stderr read line by line and the URLs it announced."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.stderr_lines: list[str] = []
        self.stdout_lines: list[str] = []
        self.urls: dict[str, str] = {}
        self._stdout_reader = asyncio.ensure_future(self._read_stdout()) if process.stdout is not None else None

    async def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            self.stdout_lines.append(line.decode())

    def url(self, name: str) -> str:
        """Where ``name`` (a service name, or gateway/payment/inventory) listens."""
        return self.urls[SHORT_NAMES.get(name, name)]

    async def wait_stdout(self, needle: str, count: int = 1, timeout: float = 10) -> None:
        """Until ``count`` stdout lines contain ``needle`` (the JSON logs)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while sum(needle in line for line in self.stdout_lines) < count:
            assert loop.time() < deadline, f"fewer than {count} stdout lines with {needle!r}"
            await asyncio.sleep(0.01)

    async def read_until(self, needle: str, timeout: float = 30) -> None:
        """Read stderr until a line contains ``needle``, noting the URLs announced on the way."""

        async def scan() -> None:
            assert self.process.stderr is not None
            while True:
                line = (await self.process.stderr.readline()).decode()
                if not line:
                    raise AssertionError("process exited early:\n" + "".join(self.stderr_lines))
                self.stderr_lines.append(line)
                if match := LISTENING.search(line):
                    self.urls[match[1]] = match[2]
                if needle in line:
                    return

        await asyncio.wait_for(scan(), timeout)

    async def stop(self, signum: int, timeout: float = 30) -> tuple[int, str]:
        """Send ``signum``; the exit status and the rest of stderr."""
        self.process.send_signal(signum)
        return await self.exited(timeout)

    async def exited(self, timeout: float = 30) -> tuple[int, str]:
        """The exit status and the rest of stderr, once the process has ended."""
        assert self.process.stderr is not None
        rest = (await asyncio.wait_for(self.process.stderr.read(), timeout)).decode()
        status = await asyncio.wait_for(self.process.wait(), timeout)
        if self._stdout_reader is not None:
            await asyncio.wait_for(self._stdout_reader, timeout)
        return status, rest

    async def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


class Supervisor(Process):
    """``python supervisor.py`` with the embedded sink on its SQLite file."""

    def __init__(self, process: asyncio.subprocess.Process, db: Path) -> None:
        super().__init__(process)
        self.db = db


async def _python(args: list[str], cwd: Path, env: dict[str, str], stdout: bool) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        *args,
        cwd=cwd,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
        stdout=asyncio.subprocess.PIPE if stdout else asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


async def spawn(args: list[str], env: dict[str, str], *, cwd: Path = ROOT, stdout: bool = True) -> Process:
    """Start ``python ARGS`` with ``env`` added to this environment."""
    return Process(await _python(args, cwd, env, stdout))


async def start_supervisor(tmp_path: Path, *args: str, python_args: tuple[str, ...] = (), **env: str) -> Supervisor:
    """The supervisor on port 0 (services) with its embedded sink on a free port, fast latencies."""
    db = tmp_path / "signals.db"
    environ = {
        "GATEWAY_PORT": "0",
        "PAYMENT_PORT": "0",
        "INVENTORY_PORT": "0",
        # the batcher must know the sink's URL before the sink starts
        "PRODSENTINEL_URL": f"http://127.0.0.1:{free_port()}",
        "FAKESVC_SINK": "on",
        "FAKESVC_SINK_DB": str(db),
        "FAKESVC_SPILL_DIR": str(tmp_path / "spill"),
        "FAKESVC_LATENCY_SCALE": "0",
        **FAST_TIMEOUTS,
        **env,
    }
    return Supervisor(await _python([*python_args, str(ROOT / "supervisor.py"), *args], tmp_path, environ, True), db)


async def start_traffic(target: str, *args: str, **env: str) -> Process:
    """``python -m fakesvc.traffic`` against ``target``, quiet, its summary on stdout."""
    return await spawn(["-m", "fakesvc.traffic", "--target", target, "--quiet", *args], env)
