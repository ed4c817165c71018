"""Hosts of a test's own: Linux network namespaces joined by point-to-point veth links, so a fault between two
of them (a cut cable, a slow path, a killed process, a restarted server) touches nothing else.

A link is cut by taking down its far end: the near end keeps its address and route and loses its carrier, so
packets go out and nothing comes back, as with a pulled cable or a silent firewall, not a quick refusal. The
root namespace (the test process) is a host too: it drives the clients and reaches every server over links of
its own. Needs root (`ip netns`); `available()` says whether this machine can make them.
"""

import contextlib
import os
import queue
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = ""  # the namespace the test runs in
STOP_WITHIN_SECONDS = 10


def _ip(*args: str, namespace: str = ROOT) -> None:
    prefix = ["ip", "netns", "exec", namespace] if namespace else []
    subprocess.run([*prefix, "ip", *args], check=True, capture_output=True, timeout=10)


def available() -> str | None:
    """None if this process can make network namespaces, else why not."""
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    if os.geteuid() != 0:
        return "making network namespaces needs root"
    probe = f"ca-probe-{os.getpid()}"
    try:
        _ip("netns", "add", probe)
    except subprocess.CalledProcessError as error:
        return f"`ip netns add` failed: {error.stderr.decode(errors='replace').strip()}"
    _ip("netns", "del", probe)
    return None


@dataclass
class Link:
    """A veth pair: `near` in one namespace, `far` in the other, each end with its own address."""

    near_namespace: str
    near_device: str
    near_address: str
    far_namespace: str
    far_device: str
    far_address: str

    def cut(self) -> None:
        _ip("link", "set", self.far_device, "down", namespace=self.far_namespace)

    def mend(self) -> None:
        _ip("link", "set", self.far_device, "up", namespace=self.far_namespace)

    @contextlib.contextmanager
    def cut_off(self) -> Iterator[None]:
        self.cut()
        try:
            yield
        finally:
            self.mend()


@dataclass
class Network:
    """Namespaces named after this process, so two runs on one machine never meet; all removed on close."""

    prefix: str = field(default_factory=lambda: f"ca{os.getpid()}")
    namespaces: list[str] = field(default_factory=list)
    _links: int = 0

    def host(self, name: str) -> str:
        namespace = f"{self.prefix}-{name}"
        _ip("netns", "add", namespace)
        self.namespaces.append(namespace)
        _ip("link", "set", "lo", "up", namespace=namespace)
        return namespace

    def link(self, near: str, far: str) -> Link:
        """A /30 of its own from 10.x.y.0/24, where x.y come from this process's id."""
        self._links += 1
        number = self._links
        assert number < 64, "a /24 holds 63 point-to-point links"
        pid = os.getpid() % 65_536
        subnet = f"10.{pid >> 8}.{pid & 255}"
        ends = []
        for side, namespace, host_part in (("a", near, 4 * number + 1), ("b", far, 4 * number + 2)):
            ends.append((namespace, f"{self.prefix[-9:]}{number}{side}", f"{subnet}.{host_part}"))
        (near_ns, near_dev, near_addr), (far_ns, far_dev, far_addr) = ends
        _ip("link", "add", near_dev, "type", "veth", "peer", "name", far_dev)
        for namespace, device, address in ends:
            if namespace:
                _ip("link", "set", device, "netns", namespace)
            _ip("addr", "add", f"{address}/30", "dev", device, namespace=namespace)
            _ip("link", "set", device, "up", namespace=namespace)
        return Link(near_ns, near_dev, near_addr, far_ns, far_dev, far_addr)

    def close(self) -> None:
        for namespace in self.namespaces:
            pids = subprocess.run(
                ["ip", "netns", "pids", namespace], capture_output=True, text=True, check=False
            ).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True, check=False)
        self.namespaces.clear()


@contextlib.contextmanager
def network() -> Iterator[Network]:
    made = Network()
    try:
        yield made
    finally:
        made.close()


@dataclass
class Process:
    """A process started in a namespace, in a process group of its own, its output in `log`."""

    namespace: str
    command: list[str]
    log: Path
    env: dict[str, str] | None = None
    cwd: Path | None = None
    popen: subprocess.Popen | None = None

    def start(self) -> "Process":
        with self.log.open("a") as output:
            self.popen = subprocess.Popen(
                ["ip", "netns", "exec", self.namespace, *self.command],
                env=self.env,
                cwd=self.cwd,
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        return self

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole group: a crash, not a shutdown."""
        if self.popen is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=STOP_WITHIN_SECONDS)

    def terminate(self) -> None:
        """SIGTERM to the whole group, without waiting."""
        if self.running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)

    def stop(self) -> None:
        if not self.running:
            return
        self.terminate()
        try:
            self.popen.wait(timeout=STOP_WITHIN_SECONDS)
        except subprocess.TimeoutExpired:
            self.kill()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def wait_for_port(address: str, port: int, process: Process, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        assert process.running, f"{process.command[0]} exited early:\n{process.output()[-3000:]}"
        with contextlib.suppress(OSError), socket.create_connection((address, port), timeout=1):
            return
        time.sleep(0.1)
    raise AssertionError(
        f"nothing listened on {address}:{port} within {within}s:\n{process.output()[-3000:]}"
    )


class Postgres:
    """A PostgreSQL cluster of the test's own in `namespace`, trusting its links (the test's own network)."""

    PORT = 5432

    def __init__(self, namespace: str, address: str, log: Path) -> None:
        self.bin = Path(shutil.which("initdb") or "/usr/lib/postgresql/15/bin/initdb").resolve().parent
        # Outside pytest's temporary folders: those are private to root, and the server runs as postgres.
        self.data = Path(tempfile.mkdtemp(prefix="chittyauth-netns-pg-"))
        shutil.chown(self.data, "postgres", "postgres")
        self.address = address
        self.process = Process(
            namespace,
            self._as_postgres(
                str(self.bin / "postgres"),
                "-D",
                str(self.data),
                "-c",
                "listen_addresses=*",
                "-c",
                f"unix_socket_directories={self.data}",
                "-c",
                "fsync=off",
            ),
            log,
        )

    @staticmethod
    def _as_postgres(*command: str) -> list[str]:
        return ["setpriv", "--reuid=postgres", "--regid=postgres", "--clear-groups", *command]

    def start(self) -> "Postgres":
        subprocess.run(
            self._as_postgres(
                str(self.bin / "initdb"),
                "-D",
                str(self.data),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
            ),
            check=True,
            capture_output=True,
            timeout=120,
        )
        with (self.data / "pg_hba.conf").open("a") as hba:
            hba.write("host all all 10.0.0.0/8 trust\n")
        self.process.start()
        wait_for_port(self.address, self.PORT, self.process)
        return self

    def url(self, database: str, address: str | None = None) -> str:
        return f"postgres://postgres@{address or self.address}:{self.PORT}/{database}"

    def close(self) -> None:
        self.process.stop()
        shutil.rmtree(self.data, ignore_errors=True)


class Redis:
    """A Redis in `namespace` that keeps nothing on disk, so a restart is also a flush."""

    PORT = 6379

    def __init__(self, namespace: str, address: str, log: Path) -> None:
        executable = shutil.which("redis-server")
        assert executable, "redis-server is not installed"
        command = [
            executable,
            "--bind",
            "0.0.0.0",  # noqa: S104 - its own namespace
            "--port",
            str(self.PORT),
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "no",
        ]
        self.address = address
        self.process = Process(namespace, command, log)

    def start(self) -> "Redis":
        self.process.start()
        wait_for_port(self.address, self.PORT, self.process)
        return self

    def restart(self) -> None:
        self.process.kill()
        self.start()

    def url(self, address: str) -> str:
        return f"redis://{address}:{self.PORT}/0"


class LatencyRelay:
    """A TCP relay in the test process that holds every chunk for `delay` seconds each way, as a slow network
    path would (the kernel here has no netem). Order is kept; throughput is not throttled."""

    def __init__(self, listen_address: str, target: tuple[str, int]) -> None:
        self.delay = 0.0
        self.target = target
        self._listener = socket.create_server((listen_address, 0))
        self.address, self.port = self._listener.getsockname()[:2]
        self._closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            for source, sink in ((client, upstream), (upstream, client)):
                self._pump(source, sink)

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        held: queue.Queue[tuple[float, bytes]] = queue.Queue()

        def receive() -> None:
            with contextlib.suppress(OSError):
                while chunk := source.recv(65_536):
                    held.put((time.monotonic() + self.delay, chunk))
            held.put((0.0, b""))

        def send() -> None:
            with contextlib.suppress(OSError):
                while (item := held.get())[1]:
                    due, chunk = item
                    time.sleep(max(due - time.monotonic(), 0))
                    sink.sendall(chunk)
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

        threading.Thread(target=receive, daemon=True).start()
        threading.Thread(target=send, daemon=True).start()

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
