"""A Ray cluster of several nodes on this one machine, started with the real `ray start` CLI (head, then workers
joining it), every node on its own ports under its own temp dir, and stopped by that temp dir: `ray stop` would
kill every Ray process on the machine, other people's included. Each `ray start` runs under `subreaper.py`, which
adopts and reaps the daemons it leaves behind, whatever the machine's PID 1 does."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PORTS_PER_NODE = 8
SUBREAPER = Path(__file__).with_name("subreaper.py")
MARKER = "SHELF_TEST_RAY_CLUSTER"  # in the environment of every process of the cluster, which they all inherit
WORKER_PORTS_PER_NODE = 100


def free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def free_port_range(size: int) -> int:
    """The first of `size` consecutive free ports (worker ports come as a range)."""
    for start in range(21000, 60000, size):
        try:
            held = []
            for port in range(start, start + size):
                s = socket.socket()
                held.append(s)
                s.bind(("127.0.0.1", port))
            return start
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise RuntimeError("no free port range")


class LocalCluster:
    def __init__(self, nodes: int = 2, cpus_per_node: int = 1):
        self.nodes, self.cpus_per_node = nodes, cpus_per_node
        self.temp_dir = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's unix socket paths must fit
        self.address = ""
        self.client_port = 0
        self.reapers: list[subprocess.Popen] = []  # one per `ray start`, each the parent of that node's processes
        # Loopback only, no usage reports; token authentication off (its token file is per user, shared by
        # everyone's clusters on this machine).
        self.environment = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}

    def _ray_start(self, *args: str) -> None:
        env = {**os.environ, **self.environment, MARKER: self.temp_dir}
        # Ray's own CLI, from the Python that runs the tests (a fresh install may not have it on PATH yet).
        command = [sys.executable, "-m", "ray.scripts.scripts", "start", *args]
        reaper = subprocess.Popen([sys.executable, str(SUBREAPER), *command], env=env, stdout=subprocess.PIPE,
                                  text=True)
        self.reapers.append(reaper)
        with reaper.stdout:
            done = json.loads(reaper.stdout.readline() or '{"returncode": -1, "stdout": "", "stderr": "no report"}')
        if done["returncode"] != 0:
            raise RuntimeError(f"ray start {' '.join(args)} failed:\n{done['stdout']}\n{done['stderr']}")

    def start(self) -> LocalCluster:
        try:
            self._start_nodes()
        except BaseException:  # nobody else would stop the nodes already up
            self.stop()
            raise
        return self

    def _start_nodes(self) -> None:
        for node in range(self.nodes):
            (gcs, manager, objects, agent_http, agent_grpc, runtime_env, metrics, client) = free_ports(PORTS_PER_NODE)
            first_worker_port = free_port_range(WORKER_PORTS_PER_NODE)
            common = ["--num-cpus", str(self.cpus_per_node), "--node-ip-address", "127.0.0.1",
                      "--node-manager-port", str(manager), "--object-manager-port", str(objects),
                      "--min-worker-port", str(first_worker_port),
                      "--max-worker-port", str(first_worker_port + WORKER_PORTS_PER_NODE - 1),
                      "--dashboard-agent-listen-port", str(agent_http), "--dashboard-agent-grpc-port",
                      str(agent_grpc), "--runtime-env-agent-port", str(runtime_env), "--metrics-export-port",
                      str(metrics), "--temp-dir", self.temp_dir, "--disable-usage-stats"]
            if node == 0:
                self._ray_start("--head", "--port", str(gcs), "--include-dashboard=false",
                                "--ray-client-server-port", str(client), *common)
                self.address, self.client_port = f"127.0.0.1:{gcs}", client
            else:
                self._ray_start("--address", self.address, *common)

    def pids(self) -> list[int]:
        """Every process of this cluster: it inherited the marker from `ray start`, names the temp dir on its
        command line, or holds a file in it open (the agents rename themselves and drop most of the
        environment; all of them keep their logs there)."""
        marker = f"{MARKER}={self.temp_dir}".encode()
        spare = {os.getpid(), *(reaper.pid for reaper in self.reapers)}  # the reapers leave once the rest has gone
        return [int(entry.name) for entry in Path("/proc").iterdir()
                if entry.name.isdigit() and int(entry.name) not in spare and self._belongs(entry, marker)]

    def _belongs(self, proc: Path, marker: bytes) -> bool:
        try:
            if marker in (proc / "environ").read_bytes().split(b"\0") or \
                    self.temp_dir.encode() in (proc / "cmdline").read_bytes():
                return True
            return any(os.readlink(fd).startswith(self.temp_dir + "/") for fd in (proc / "fd").iterdir())
        except OSError:  # gone meanwhile, or not ours to read
            return False

    def stop(self, grace_s: float = 10.0) -> None:
        for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
            for pid in self.pids():
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + wait
            while self.pids() and time.monotonic() < deadline:
                time.sleep(0.2)
        leftover = self.pids()
        if leftover:
            raise RuntimeError(f"Ray processes {leftover} of {self.temp_dir} would not stop")
        for reaper in self.reapers:  # each exits once it has reaped its last child
            try:
                reaper.wait(timeout=10)
            except subprocess.TimeoutExpired:
                reaper.kill()
                reaper.wait()
                raise RuntimeError(f"the reaper of {self.temp_dir} (pid {reaper.pid}) still had children") from None
        subprocess.run(["rm", "-rf", self.temp_dir], check=False)
