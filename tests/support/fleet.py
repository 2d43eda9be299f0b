"""Several Docker hosts on this one machine: a network namespace per host, each with its own
dockerd (own config file, data root, exec root, pidfile, socket and iptables) and its own
address on a veth this test bed created.

    root netns: <p>-r 10.N.7.1/24 ═veth═ netns <p>-sw (bridge br0) ═veth═ netns <p>-hI:
        eth0 10.N.7.1I (10.N.7.11, .12, …), docker0 10.N.(10+I).1/24, dockerd + containerd

``<p>`` is ``sf`` + four hex digits, unique per test bed, so two test beds (two engineers, two
sessions) never share a name; ``N`` is the first ``10.N.0.0/16`` with no address or route in
the root namespace. The hosts have no default route: replicas reach nothing outside the test
bed, and tests only ever target the addresses it created. The root namespace's 127.0.0.1 is
not visible inside a host, so :meth:`Fleet.forward` makes one loopback port (the test
registry's) reachable as 127.0.0.1:PORT inside every host: the hosts pull their images from
the registry, as production hosts do.

As a pytest fixture: ``fleet`` (three hosts, one test bed for the session, torn down after
its last user).
By hand (``scripts/fleet-testbed.sh``, root only)::

    fleet-testbed.sh up [N]           start N hosts (default 3), print their engines and a
                                      SLIPWAY_CLUSTERS value naming them
    fleet-testbed.sh list             the test beds on this machine and their owners
    fleet-testbed.sh status ID        hosts, dockerd pids, containers
    fleet-testbed.sh forward ID PORT  root 127.0.0.1:PORT as 127.0.0.1:PORT in every host
    fleet-testbed.sh docker ID I ...  the docker CLI against host I
    fleet-testbed.sh exec ID I ...    a command inside host I's network namespace
    fleet-testbed.sh down ID          stop it and remove everything it made

Teardown leaves nothing: containers, dockerd/containerd, forwarders, leftover processes in
the namespaces, container cgroups, mounts under the test bed's directory, namespaces, links
and the directory; :meth:`Fleet.down` returns whatever it still finds.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import docker
import pytest

from schemas.settings import Cluster, DockerHost

CHECKOUT = Path(__file__).resolve().parents[2]
BASE_DIR = Path("/tmp")
DIR_PREFIX = "slipway-fleet-"
MARKER = "fleet.json"
# Taken while a test bed picks its subnet and creates its root link: two starting at once
# never pick the same one.
LOCK = Path("/run/slipway-fleet.lock")
NETS = range(200, 250)  # 10.N.0.0/16 candidates
MAX_HOSTS = 8
START_SECONDS = 30.0  # one dockerd until it answers
STOP_SECONDS = 15.0  # one dockerd after SIGTERM, before SIGKILL
COMMAND_SECONDS = 20.0  # one ip/nsenter/umount command
FORWARD_TAG = "tests.support.fleet"

T = TypeVar("T")


class FleetUnavailable(Exception):
    """This machine cannot create network namespaces (not root, no CAP_NET_ADMIN, …)."""


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_SECONDS,
                          check=check, stdin=subprocess.DEVNULL)


def _alive(pid: int) -> bool:
    """``pid`` runs (a zombie does not)."""
    if pid <= 0:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _owned(pid: int, mark: str) -> bool:
    """``pid`` runs and its command line contains ``mark`` (a path only we use)."""
    return pid > 0 and mark in _cmdline(pid)


def _read_pid(path: Path) -> int:
    try:
        return int(path.read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


def _wait_gone(pid: int, seconds: float) -> bool:
    """Whether ``pid`` ended within ``seconds`` (reaped, when it is our own child)."""
    deadline = time.monotonic() + seconds
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
    return not _alive(pid)


def _stop(pid: int, seconds: float) -> None:
    """SIGTERM, ``seconds`` to end, then SIGKILL."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        if not _wait_gone(pid, seconds):
            os.kill(pid, signal.SIGKILL)
            _wait_gone(pid, 5)


def _each(items: list[Any], work: Callable[[Any], T]) -> list[T]:
    if len(items) <= 1:
        return [work(item) for item in items]
    with ThreadPoolExecutor(max_workers=len(items)) as pool:
        return list(pool.map(work, items))


@dataclass(frozen=True)
class FleetHost:
    """One namespace host: its name in the cluster, namespace, address and directory."""

    index: int
    name: str
    netns: str
    address: str
    dir: Path

    @property
    def engine(self) -> str:
        return f"unix://{self.dir / 'docker.sock'}"

    @property
    def netns_path(self) -> str:
        return f"/run/netns/{self.netns}"

    def docker_host(self, capacity: int = 0) -> DockerHost:
        return DockerHost(name=self.name, engine=self.engine, address=self.address,
                          labels={"testbed": "netns"}, capacity=capacity)

    def client(self, timeout: int = 30) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.engine, timeout=timeout)


@dataclass
class Fleet:
    """A test bed of ``count`` Docker hosts; :meth:`up`, use, :meth:`down`."""

    count: int = 3
    ident: str = field(default_factory=lambda: secrets.token_hex(2))
    net: int = 0  # N of 10.N.0.0/16; chosen by up()
    live_restore: bool = True
    by_hand: bool = False
    hosts: list[FleetHost] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def prefix(self) -> str:
        return f"sf{self.ident}"

    @property
    def dir(self) -> Path:
        return BASE_DIR / f"{DIR_PREFIX}{self.ident}"

    @property
    def switch(self) -> str:
        return f"{self.prefix}-sw"

    @property
    def root_link(self) -> str:
        return f"{self.prefix}-r"

    @property
    def gateway(self) -> str:
        """The root namespace's address on the test bed's network."""
        return f"10.{self.net}.7.1"

    def cluster(self, capacity: int = 0) -> Cluster:
        """The hosts as a Docker cluster of the settings."""
        return Cluster(hosts=[host.docker_host(capacity) for host in self.hosts])

    # -- up ---------------------------------------------------------------------------------

    def up(self) -> Fleet:
        """Create the network and start every host's dockerd; on any failure, tear down what
        was made and raise (:class:`FleetUnavailable` when namespaces cannot be made)."""
        if not 1 <= self.count <= MAX_HOSTS:
            raise ValueError(f"a test bed has 1..{MAX_HOSTS} hosts, not {self.count}")
        if os.geteuid() != 0:
            raise FleetUnavailable("network namespaces need root (CAP_NET_ADMIN, CAP_SYS_ADMIN)")
        missing = [tool for tool in ("ip", "nsenter", "dockerd", "containerd", "umount")
                   if shutil.which(tool) is None]
        if missing:
            raise RuntimeError(f"missing {', '.join(missing)}: run scripts/bootstrap.sh")
        started = time.monotonic()
        try:
            self._network()
            self.timings["network"] = time.monotonic() - started
            _each(self.hosts, self._start_dockerd)
        except BaseException:
            self.down()
            raise
        self.timings["up"] = time.monotonic() - started
        return self

    def _network(self) -> None:
        LOCK.parent.mkdir(parents=True, exist_ok=True)
        with LOCK.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self.net = self.net or _free_net()
            self.dir.mkdir(parents=True, exist_ok=False)
            self._write_marker()
            try:
                _run("ip", "netns", "add", self.switch)
            except subprocess.CalledProcessError as error:
                raise FleetUnavailable(f"cannot create a network namespace: "
                                       f"{error.stderr.strip()}") from error
            sw = ("ip", "-n", self.switch)
            _run(*sw, "link", "set", "lo", "up")
            _run(*sw, "link", "add", "br0", "type", "bridge")
            _run(*sw, "link", "set", "br0", "up")
            _run("ip", "link", "add", self.root_link, "type", "veth", "peer", "name", "r0",
                 "netns", self.switch)
            _run(*sw, "link", "set", "r0", "master", "br0", "up")
            _run("ip", "addr", "add", f"{self.gateway}/24", "dev", self.root_link)
            _run("ip", "link", "set", self.root_link, "up")
        for index in range(1, self.count + 1):
            host = FleetHost(index=index, name=f"n{index}", netns=f"{self.prefix}-h{index}",
                             address=f"10.{self.net}.7.{10 + index}",
                             dir=self.dir / f"h{index}")
            self.hosts.append(host)
            self._write_marker()
            host.dir.mkdir()
            # Never /etc/docker/daemon.json: the flags below are the whole configuration.
            (host.dir / "daemon.json").write_text("{}\n")
            _run("ip", "netns", "add", host.netns)
            inside = ("ip", "-n", host.netns)
            _run(*inside, "link", "set", "lo", "up")
            _run(*sw, "link", "add", f"p-h{index}", "type", "veth", "peer", "name", "eth0",
                 "netns", host.netns)
            _run(*sw, "link", "set", f"p-h{index}", "master", "br0", "up")
            _run(*inside, "addr", "add", f"{host.address}/24", "dev", "eth0")
            _run(*inside, "link", "set", "eth0", "up")

    def _start_dockerd(self, host: FleetHost) -> None:
        started = time.monotonic()
        i, d = host.index, host.dir
        # nsenter --net only: the host's mount namespace stays (`ip netns exec` remounts /sys
        # and dockerd then finds no cgroups). nsenter execs dockerd: the pid is dockerd's.
        argv = ["nsenter", f"--net={host.netns_path}", "--", "dockerd",
                "--config-file", str(d / "daemon.json"), "--data-root", str(d / "data"),
                "--exec-root", str(d / "exec"), "--pidfile", str(d / "docker.pid"),
                "-H", host.engine, "--storage-driver", "overlay2",
                "--cgroup-parent", f"/{host.netns}",
                "--bip", f"10.{self.net}.{10 + i}.1/24",
                "--default-address-pool", f"base=10.{self.net}.{112 + 16 * i}.0/20,size=24",
                "--iptables=true", "--userland-proxy=false", "--shutdown-timeout", "2",
                *(["--live-restore"] if self.live_restore else [])]
        with (d / "dockerd.log").open("ab") as log:
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        (d / "dockerd.pid").write_text(f"{process.pid}\n")
        deadline = started + START_SECONDS
        while True:
            with contextlib.suppress(docker.errors.DockerException, OSError):
                with contextlib.closing(host.client(timeout=5)) as client:  # asks the version
                    client.ping()
                break
            if process.poll() is not None or time.monotonic() > deadline:
                tail = (d / "dockerd.log").read_text(errors="replace").splitlines()[-8:]
                raise RuntimeError(f"dockerd of {host.name} did not answer within "
                                   f"{START_SECONDS:.0f}s (exit {process.poll()}):\n"
                                   + "\n".join(tail))
            time.sleep(0.05)
        self.timings[f"{host.name} dockerd"] = time.monotonic() - started

    def _write_marker(self) -> None:
        (self.dir / MARKER).write_text(json.dumps({
            "ident": self.ident, "net": self.net, "count": self.count,
            "hosts": [host.index for host in self.hosts], "owner": os.getpid(),
            "by_hand": self.by_hand, "live_restore": self.live_restore}) + "\n")

    @classmethod
    def load(cls, ident: str) -> Fleet:
        """A test bed started elsewhere (by hand, another process), from its marker."""
        marker = json.loads((BASE_DIR / f"{DIR_PREFIX}{ident}" / MARKER).read_text())
        fleet = cls(count=marker["count"], ident=marker["ident"], net=marker["net"],
                    live_restore=marker["live_restore"], by_hand=marker["by_hand"])
        fleet.hosts = [FleetHost(index=i, name=f"n{i}", netns=f"{fleet.prefix}-h{i}",
                                 address=f"10.{fleet.net}.7.{10 + i}", dir=fleet.dir / f"h{i}")
                       for i in marker["hosts"]]
        return fleet

    # -- use --------------------------------------------------------------------------------

    def forward(self, port: int) -> None:
        """Root 127.0.0.1:``port`` reachable as 127.0.0.1:``port`` inside every host (the
        registry the cluster pulls from). Idempotent."""
        pidfile = self.dir / f"forward-{port}.pid"
        if _owned(_read_pid(pidfile), self._forward_mark(port)):
            return
        ready = self.dir / f"forward-{port}.ready"
        ready.unlink(missing_ok=True)
        with (self.dir / f"forward-{port}.log").open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", FORWARD_TAG, "_forward", self.ident, str(port),
                 *(host.netns_path for host in self.hosts)],
                cwd=CHECKOUT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        pidfile.write_text(f"{process.pid}\n")
        deadline = time.monotonic() + 10
        while not ready.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"forwarding port {port} into the hosts failed: "
                                   + (self.dir / f"forward-{port}.log").read_text()[-600:])
            time.sleep(0.05)

    def _forward_mark(self, port: int) -> str:
        return f"{FORWARD_TAG} _forward {self.ident} {port} "

    def remove_app_containers(self, *apps: str) -> None:
        """Remove every container of ``apps`` (their ``slipway.app`` label) on every host."""
        for host in self.hosts:
            with contextlib.closing(host.client()) as client:
                for container in client.containers.list(all=True,
                                                        filters={"label": "slipway.app"}):
                    if container.labels["slipway.app"] in apps:
                        container.remove(force=True)

    def status(self) -> list[str]:
        lines = []
        for host in self.hosts:
            pid = _read_pid(host.dir / "docker.pid")
            try:
                with contextlib.closing(host.client(timeout=5)) as client:
                    containers = str(len(client.containers.list()))
            except docker.errors.DockerException as error:
                containers = f"? ({type(error).__name__})"
            lines.append(f"{host.name} netns={host.netns} address={host.address} "
                         f"engine={host.engine} dockerd={pid or '-'} "
                         f"alive={_alive(pid) if pid else False} containers={containers}")
        return lines

    # -- down -------------------------------------------------------------------------------

    def down(self) -> list[str]:
        """Stop and remove everything this test bed made; what is still there afterwards."""
        started = time.monotonic()
        for pidfile in self.dir.glob("forward-*.pid"):
            port = pidfile.name.removeprefix("forward-").removesuffix(".pid")
            pid = _read_pid(pidfile)
            if _owned(pid, self._forward_mark(int(port))):
                _stop(pid, 5)
        _each(self.hosts, self._stop_host)
        for netns in self._our_netns():
            self._kill_inside(netns)
        self._clear_cgroups()
        self._unmount()
        for netns in self._our_netns():
            _run("ip", "netns", "del", netns, check=False)
        if Path(f"/sys/class/net/{self.root_link}").exists():
            _run("ip", "link", "del", self.root_link, check=False)
        shutil.rmtree(self.dir, ignore_errors=True)
        self.timings["down"] = time.monotonic() - started
        return self.leftovers()

    def _stop_host(self, host: FleetHost) -> None:
        """Its containers removed first (live-restore would keep them), then its dockerd."""
        pid = _read_pid(host.dir / "dockerd.pid") or _read_pid(host.dir / "docker.pid")
        mark = str(host.dir / "exec")
        if (host.dir / "docker.sock").exists() and _owned(pid, mark):
            with (contextlib.suppress(docker.errors.DockerException, OSError),
                  contextlib.closing(host.client(timeout=20)) as client):
                for container in client.containers.list(all=True):
                    with contextlib.suppress(docker.errors.DockerException):
                        container.remove(force=True)
        if _owned(pid, mark):
            _stop(pid, STOP_SECONDS)

    def _our_netns(self) -> list[str]:
        listed = _run("ip", "netns", "list", check=False).stdout.split("\n")
        names = {line.split()[0] for line in listed if line.strip()}
        ours = {self.switch, *(f"{self.prefix}-h{i}" for i in range(1, MAX_HOSTS + 1))}
        return sorted(names & ours)

    @staticmethod
    def _kill_inside(netns: str) -> None:
        """Whatever still runs in one of our namespaces is ours (a shim, a container)."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            pids = [int(p) for p in _run("ip", "netns", "pids", netns,
                                         check=False).stdout.split()]
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            if not pids:
                return
            deadline = time.monotonic() + 2
            while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
                time.sleep(0.05)

    def _cgroups(self) -> list[Path]:
        root = Path("/sys/fs/cgroup")
        found = [*root.glob(f"*/{self.prefix}-h*"), *root.glob(f"{self.prefix}-h*")]
        return [path for path in found if path.is_dir()]

    def _clear_cgroups(self) -> None:
        for group in self._cgroups():
            for procs in group.rglob("cgroup.procs"):
                with contextlib.suppress(OSError, ValueError):
                    for pid in procs.read_text().split():
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(int(pid), signal.SIGKILL)
            for sub in sorted((p for p in group.rglob("*") if p.is_dir()),
                              key=lambda p: len(p.parts), reverse=True):
                with contextlib.suppress(OSError):
                    sub.rmdir()
            with contextlib.suppress(OSError):
                group.rmdir()

    def _mounts(self) -> list[str]:
        inside = f"{self.dir}/"
        points = []
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4].replace("\\040", " ")
            if point.startswith(inside):
                points.append(point)
        return points

    def _unmount(self) -> None:
        for point in sorted(set(self._mounts()), key=len, reverse=True):
            if _run("umount", point, check=False).returncode != 0:
                _run("umount", "-l", point, check=False)

    def leftovers(self) -> list[str]:
        left = [f"netns {name}" for name in self._our_netns()]
        if Path(f"/sys/class/net/{self.root_link}").exists():
            left.append(f"link {self.root_link}")
        left += [f"mount {point}" for point in self._mounts()]
        left += [f"cgroup {group}" for group in self._cgroups()]
        mark = str(self.dir)
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and mark in _cmdline(int(entry.name)):
                left.append(f"process {entry.name}: {_cmdline(int(entry.name))[:120]}")
        if self.dir.exists():
            left.append(f"directory {self.dir}")
        return left


def _free_net() -> int:
    """The first 10.N.0.0/16 no root-namespace address or route, nor another test bed, uses."""
    used: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for argv in (("ip", "-4", "-o", "addr", "show"), ("ip", "-4", "route", "show", "table",
                                                      "all")):
        for word in _run(*argv, check=False).stdout.split():
            with contextlib.suppress(ValueError):
                if word[0].isdigit():
                    used.append(ipaddress.ip_network(word, strict=False))
    for marker in BASE_DIR.glob(f"{DIR_PREFIX}*/{MARKER}"):
        with contextlib.suppress(OSError, ValueError, KeyError):
            used.append(ipaddress.ip_network(f"10.{json.loads(marker.read_text())['net']}.0.0/16"))
    for net in NETS:
        candidate = ipaddress.ip_network(f"10.{net}.0.0/16")
        if not any(candidate.overlaps(other) for other in used
                   if other.prefixlen > 0):  # the default route overlaps everything
            return net
    raise RuntimeError(f"no free 10.N.0.0/16 for a test bed (N in {NETS.start}..{NETS.stop - 1})")


def fleets() -> list[dict[str, Any]]:
    """Every test bed's marker on this machine, with whether its owner still runs."""
    found = []
    for marker in sorted(BASE_DIR.glob(f"{DIR_PREFIX}*/{MARKER}")):
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(marker.read_text())
            data["owner_alive"] = _alive(int(data.get("owner", 0)))
            found.append(data)
    return found


# -- the fixture ----------------------------------------------------------------------------

FLEET_HOSTS = 3


@dataclass
class _Shared:
    """The session's one test bed: modules that import the fixture each get a fixture
    definition of their own, and all of them share this."""

    bed: Fleet | None = None
    unavailable: str = ""
    users: int = 0


_SESSION = _Shared()


@pytest.fixture(scope="session")
def fleet() -> Iterator[Fleet]:
    """Three namespace hosts with their own dockerd, shared by the session and torn down
    after its last user; skipped (with the reason) only when this machine cannot create
    network namespaces."""
    if _SESSION.unavailable:
        pytest.skip(_SESSION.unavailable)
    if _SESSION.bed is None:
        bed = Fleet(count=FLEET_HOSTS)
        try:
            bed.up()
        except FleetUnavailable as reason:
            _SESSION.unavailable = f"no Docker fleet test bed here: {reason}"
            pytest.skip(_SESSION.unavailable)
        timings = ", ".join(f"{name} {seconds:.2f}s" for name, seconds in bed.timings.items())
        print(f"\nfleet test bed {bed.prefix} on 10.{bed.net}.7.0/24 up: {timings}")
        _SESSION.bed = bed
    _SESSION.users += 1
    try:
        yield _SESSION.bed
    finally:
        _SESSION.users -= 1
        if _SESSION.users == 0:
            bed, _SESSION.bed = _SESSION.bed, None
            left = bed.down()
            print(f"\nfleet test bed {bed.prefix} down in {bed.timings['down']:.2f}s"
                  + (f"; LEFT BEHIND: {left}" if left else ", nothing left behind"))
            if left:
                raise RuntimeError(f"fleet test bed {bed.prefix} left behind: {left}")


# -- the port forwarder (its own process) and the command line ------------------------------


def _serve_forward(port: int, netns_paths: list[str], ready: Path) -> None:
    """Listen on 127.0.0.1:``port`` inside each namespace; every connection is carried to
    127.0.0.1:``port`` of the root namespace (this process's own). Runs until killed."""
    libc = ctypes.CDLL(None, use_errno=True)
    clone_newnet = 0x40000000

    def setns(fd: int) -> None:
        if libc.setns(fd, clone_newnet) != 0:
            raise OSError(ctypes.get_errno(), "setns")

    root = os.open("/proc/self/ns/net", os.O_RDONLY)
    listeners = []
    for path in netns_paths:
        target = os.open(path, os.O_RDONLY)
        setns(target)
        try:
            listener = socket.socket()
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", port))
            listener.listen(64)
            listeners.append(listener)
        finally:
            setns(root)
            os.close(target)

    def pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def accept(listener: socket.socket) -> None:
        while True:
            client, _ = listener.accept()
            try:
                upstream = socket.create_connection(("127.0.0.1", port), timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=pipe, args=(source, sink), daemon=True).start()

    threads = [threading.Thread(target=accept, args=(listener,), daemon=True)
               for listener in listeners]
    for thread in threads:
        thread.start()
    ready.write_text("ready\n")
    for thread in threads:
        thread.join()


USAGE = (__doc__ or "").split("By hand", 1)[1].split("Teardown", 1)[0]


def main(argv: list[str]) -> int:
    command, args = (argv[0], argv[1:]) if argv else ("help", [])
    if command == "_forward":
        ident, port, paths = args[0], int(args[1]), args[2:]
        _serve_forward(port, paths, BASE_DIR / f"{DIR_PREFIX}{ident}" / f"forward-{port}.ready")
        return 0
    if command == "up":
        bed = Fleet(count=int(args[0]) if args else FLEET_HOSTS, by_hand=True)
        try:
            bed.up()
        except FleetUnavailable as reason:
            print(f"fleet: cannot make a test bed here: {reason}", file=sys.stderr)
            return 1
        for name, seconds in bed.timings.items():
            print(f"  {name}: {seconds:.2f}s")
        print(f"test bed {bed.ident} up ({bed.dir}); hosts:")
        for host in bed.hosts:
            print(f"  {host.name} {host.engine} publishes on {host.address}")
        clusters = {"fleet": bed.cluster().model_dump(mode="json", include={"hosts"})}
        print(f"SLIPWAY_CLUSTERS='{json.dumps(clusters)}'")
        print(f"stop it with: scripts/fleet-testbed.sh down {bed.ident}")
        return 0
    if command == "list":
        for data in fleets():
            print(f"{data['ident']} net 10.{data['net']}.0.0/16 hosts {data['hosts']} owner "
                  f"{data['owner']} ({'by hand' if data['by_hand'] else 'tests'}, "
                  f"{'alive' if data['owner_alive'] else 'gone'})")
        return 0
    if command in ("status", "down", "forward", "docker", "exec") and args:
        bed = Fleet.load(args[0])
        if command == "status":
            print("\n".join(bed.status()))
        elif command == "down":
            left = bed.down()
            print(f"test bed {bed.ident} down in {bed.timings['down']:.2f}s"
                  + (f"; LEFT BEHIND: {left}" if left else ", nothing left behind"))
            return 1 if left else 0
        elif command == "forward":
            bed.forward(int(args[1]))
            print(f"root 127.0.0.1:{args[1]} is 127.0.0.1:{args[1]} in every host")
        elif command == "docker":
            host = bed.hosts[int(args[1]) - 1]
            os.execvp("docker", ["docker", "-H", host.engine, *args[2:]])
        else:
            host = bed.hosts[int(args[1]) - 1]
            os.execvp("nsenter", ["nsenter", f"--net={host.netns_path}", "--", *args[2:]])
        return 0
    print(USAGE.strip("\n:"), file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
