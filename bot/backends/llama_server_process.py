"""llama.cpp's native `llama-server` as a supervised child process of the bot.

`LlamaServerProcess` starts the command from bot/backends/llama_server_command.py on 127.0.0.1
(a free port unless `llama_server.port` is set) with a fresh API key per start, in its own
process group and with `PR_SET_PDEATHSIG`, so the kernel kills it if the bot dies, even by
SIGKILL. It waits for `/health` (503 while the model loads), restarts the server with backoff
when it exits, SIGKILLs and restarts it when its scheduler stops answering (`/slots`, the
watchdog), and stops it on close (SIGTERM to the group, then SIGKILL). The backend that uses it
is bot/backends/llama_server.py.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import ctypes
import ctypes.util
import dataclasses
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import IO

from bot.backends.llama_server_command import HOST, ServerCommand, child_env
from bot.errors import BackendError

logger = logging.getLogger(__name__)

HEALTH_POLL_SECONDS = 0.2
HTTP_PROBE_TIMEOUT_SECONDS = 2.0
STOP_TIMEOUT_SECONDS = 10.0
# A server that stayed up this long has recovered: the next crash starts the backoff afresh.
STABLE_AFTER_SECONDS = 60.0
# A free port can be taken between our check and the server's bind; try a few.
BIND_ATTEMPTS = 3
LOG_TAIL_LINES = 40
PR_SET_PDEATHSIG = 1


def _death_signal_preexec() -> Callable[[], None] | None:
    """A preexec_fn that makes the kernel SIGKILL the child when the spawning thread dies.

    Linux only (prctl); elsewhere None and only the process group and close() remain. libc and
    prctl are looked up here, in the parent: between fork and exec nothing may take a lock.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the bot died before the death signal was armed
            os._exit(1)

    return preexec


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int) -> bool:
    """True when something already listens on 127.0.0.1:`port`."""
    with socket.socket() as sock:
        return sock.connect_ex((HOST, port)) == 0


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """One running server: its URL and key change with every start (`generation`)."""

    generation: int
    base_url: str
    api_key: str


class _Launched:
    """A spawned child and the thread that keeps its last log lines (memory only, never logged
    unless it fails to start: nobody's message has reached it then)."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, key: str) -> None:
        self.proc, self.port, self.key = proc, port, key
        self.tail: collections.deque[str] = collections.deque(maxlen=LOG_TAIL_LINES)
        self.reader = threading.Thread(target=self._read, name="llama-server-log", daemon=True)
        self.reader.start()

    def _read(self) -> None:
        stream: IO[bytes] | None = self.proc.stdout
        if stream is None:
            return
        for raw in iter(stream.readline, b""):
            self.tail.append(raw.decode("utf-8", "replace").rstrip())

    def why(self) -> str:
        """The last error-looking line of its output (for the operator)."""
        self.reader.join(timeout=2)
        lines = [ln for ln in self.tail if ln.strip()]
        errors = [ln for ln in lines if any(w in ln.lower() for w in ("error", "failed", "bind"))]
        return (errors or lines or ["no output"])[-1][-300:]


class LlamaServerProcess:
    """Runs and supervises one llama-server child; thread-safe."""

    def __init__(
        self,
        command: ServerCommand,
        *,
        port: int = 0,
        startup_timeout: float = 120.0,
        backoff: float = 1.0,
        backoff_max: float = 30.0,
        watchdog_interval: float = 10.0,
        watchdog_timeout: float = 30.0,
    ) -> None:
        self.command = command
        self._port = port
        self._startup_timeout = startup_timeout
        self._backoff, self._backoff_max = backoff, backoff_max
        self._watch_every, self._watch_timeout = watchdog_interval, watchdog_timeout
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._endpoint: Endpoint | None = None
        self._launched: _Launched | None = None
        self._generation = 0
        self._stopping = threading.Event()
        self._first: BackendError | None = None
        self._first_done = threading.Event()
        self._thread: threading.Thread | None = None
        self._owner = os.getpid()
        self.restarts = 0

    # --- public -----------------------------------------------------------------------------
    def start(self) -> Endpoint:
        """Start the supervisor and wait for the first healthy server; BackendError if not."""
        # PR_SET_PDEATHSIG follows the *thread* that forks: every spawn happens on this one
        # long-lived supervisor thread, never on a short-lived worker.
        self._thread = threading.Thread(target=self._supervise, name="llama-server", daemon=True)
        self._thread.start()
        atexit.register(self.close)
        self._first_done.wait()
        if self._first is not None:
            self.close()
            raise self._first
        endpoint = self.wait_ready(0)
        if endpoint is None:  # closed meanwhile
            raise BackendError("llama-server stopped while starting")
        return endpoint

    def wait_ready(self, timeout: float, after: int = 0) -> Endpoint | None:
        """The running server's endpoint, waiting up to `timeout` s while it (re)starts; with
        `after`, only a server started after that generation (not the one that just failed)."""
        deadline = time.monotonic() + timeout
        with self._ready:
            while not self._stopping.is_set() and (
                self._endpoint is None or self._endpoint.generation <= after
            ):
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._ready.wait(left)
            return None if self._stopping.is_set() else self._endpoint

    def is_current(self, generation: int, grace: float = 0.5) -> bool:
        """True while the server of that start is running and healthy. A process that is just
        dying (its connections already reset) gets `grace` seconds to be seen as gone."""
        with self._lock:
            current = self._endpoint is not None and self._endpoint.generation == generation
            launched = self._launched
        if not current or launched is None:
            return False
        with contextlib.suppress(subprocess.TimeoutExpired):
            launched.proc.wait(timeout=grace)
            return False
        return True

    @property
    def pid(self) -> int | None:
        """The child's process id (it leads its own process group), or None."""
        launched = self._launched
        return launched.proc.pid if launched and launched.proc.poll() is None else None

    def close(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after STOP_TIMEOUT_SECONDS) and the supervisor."""
        if os.getpid() != self._owner:  # a forked copy of the bot: the server is not its own
            return
        self._stopping.set()
        with self._ready:
            self._endpoint = None
            self._ready.notify_all()
        launched = self._launched
        if launched is not None:
            _terminate(launched.proc)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=STOP_TIMEOUT_SECONDS + 5)
        with contextlib.suppress(Exception):
            atexit.unregister(self.close)

    # --- the supervisor thread --------------------------------------------------------------
    def _supervise(self) -> None:
        delay = self._backoff
        while not self._stopping.is_set():
            started = time.monotonic()
            try:
                launched = self._launch()
            except BackendError as exc:
                if not self._first_done.is_set():
                    self._first = exc
                    self._first_done.set()
                    return
                logger.error("llama-server did not restart: %s; next try in %.0f s", exc, delay)
            else:
                self._first_done.set()
                reason = self._watch(launched)
                if self._stopping.is_set():
                    return
                with self._ready:
                    self._endpoint = None
                if time.monotonic() - started > STABLE_AFTER_SECONDS:
                    delay = self._backoff
                logger.error("llama-server %s; restarting it in %.1f s", reason, delay)
            self._stopping.wait(delay)
            delay = min(delay * 2, self._backoff_max)
            self.restarts += 1

    def _launch(self) -> _Launched:
        """Spawn and wait for /health; the first bind failures retry on other free ports."""
        for attempt in range(1, BIND_ATTEMPTS + 1):
            port = self._port or free_port()
            if self._port and port_in_use(port):
                raise BackendError(f"llama_server.port {port} is already in use on {HOST}")
            launched = self._spawn(port)
            error = self._wait_healthy(launched)
            if error is None:
                return launched
            _terminate(launched.proc)
            bind_failed = "bind" in error.lower() or "address already in use" in error.lower()
            if not (bind_failed and not self._port and attempt < BIND_ATTEMPTS):
                raise BackendError(f"llama-server did not start: {error}")
            logger.warning("llama-server could not bind port %d; trying another", port)
        raise BackendError("llama-server did not start")  # not reached

    def _spawn(self, port: int) -> _Launched:
        key = secrets.token_urlsafe(24)
        try:
            proc = subprocess.Popen(
                self.command.argv(HOST, port),
                env=child_env(key),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stopped as a whole
                preexec_fn=_death_signal_preexec(),  # noqa: PLW1509 (no locks taken in it)
            )
        except OSError as exc:
            raise BackendError(f"cannot run {self.command.binary}: {exc}") from exc
        launched = _Launched(proc, port, key)
        self._launched = launched
        if self._stopping.is_set():  # close() ran while we were spawning
            _terminate(proc)
        return launched

    def _wait_healthy(self, launched: _Launched) -> str | None:
        """None once /health says ok; else why not (exit, timeout or stopped)."""
        import httpx

        url = f"http://{HOST}:{launched.port}/health"
        deadline = time.monotonic() + self._startup_timeout
        while time.monotonic() < deadline:
            if self._stopping.is_set():
                return "stopped while starting"
            code = launched.proc.poll()
            if code is not None:
                return f"exited with status {code}: {launched.why()}"
            with contextlib.suppress(httpx.HTTPError):
                # 503 while the model loads; 200 {"status": "ok"} when it serves.
                if httpx.get(url, timeout=HTTP_PROBE_TIMEOUT_SECONDS).status_code == 200:
                    with self._ready:
                        self._generation += 1
                        base = f"http://{HOST}:{launched.port}/v1"
                        self._endpoint = Endpoint(self._generation, base, launched.key)
                        self._ready.notify_all()
                    logger.warning(
                        "llama-server ready on %s:%d (%d slots x %d tokens, pid %d)",
                        HOST,
                        launched.port,
                        self.command.parallel,
                        self.command.ctx_per_slot,
                        launched.proc.pid,
                    )
                    return None
            time.sleep(HEALTH_POLL_SECONDS)
        return f"no healthy /health after {self._startup_timeout:.0f} s: {launched.why()}"

    def _watch(self, launched: _Launched) -> str:
        """Block until the server exits or hangs (then SIGKILL it); returns what happened."""
        import httpx

        url = f"http://{HOST}:{launched.port}/slots"
        headers = {"Authorization": f"Bearer {launched.key}"}
        while True:
            try:
                code = launched.proc.wait(timeout=self._watch_every)
            except subprocess.TimeoutExpired:
                pass
            else:
                return f"exited with status {code}"
            if self._stopping.is_set():
                return "stopped"
            try:  # /slots goes through the server's task loop: a hung loop does not answer
                httpx.get(url, headers=headers, timeout=self._watch_timeout).raise_for_status()
            except httpx.HTTPError as exc:
                if self._stopping.is_set() or launched.proc.poll() is not None:
                    continue
                _kill_group(launched.proc, signal.SIGKILL)
                launched.proc.wait()
                return f"stopped answering ({type(exc).__name__} from /slots); killed it"


def _kill_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, SIGKILL it if it is still there after STOP_TIMEOUT_SECONDS."""
    if proc.poll() is not None:
        return
    _kill_group(proc, signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        _kill_group(proc, signal.SIGKILL)
        proc.wait()
