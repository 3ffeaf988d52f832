"""Fixtures for the real-client tests: a faultline broker on a free loopback port, and a
local cluster of 3 brokers and 3 controllers.

The broker binary comes from FAULTLINE_BIN (tests/run-all builds it and sets it)."""

import os
import random
import re
import signal
import socket
import subprocess
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("FAULTLINE_BIN", os.path.join(ROOT, "target", "debug", "faultline"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class BrokerProcess:
    """One broker process; can be stopped (SIGTERM or SIGKILL) and started again on the
    same port and data directory."""

    def __init__(self, data_dir, extra_args=()):
        self.data_dir = str(data_dir)
        self.port = free_port()
        self.addr = f"127.0.0.1:{self.port}"
        self.extra_args = list(extra_args)
        self.proc = None
        self.log_path = os.path.join(self.data_dir, "..", f"broker-{self.port}.log")

    def start(self):
        assert os.path.exists(BIN), f"broker binary {BIN} not built"
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [BIN, "broker", "--listen", self.addr, "--data-dir", self.data_dir, *self.extra_args],
            stdout=log,
            stderr=log,
        )
        deadline = time.time() + 30
        while time.time() < deadline:
            assert self.proc.poll() is None, f"broker exited early, log: {self.log()}"
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"broker did not listen within 30 s, log: {self.log()}")

    def stop(self, kill=False):
        if self.proc is None:
            return
        if kill:
            self.proc.kill()
        else:
            self.proc.terminate()
        code = self.proc.wait(timeout=30)
        self.proc = None
        return code

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")[-4000:]
        except OSError:
            return "<no log>"


def ports_free(ports):
    for port in ports:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


class LocalCluster:
    """`faultline cluster`: 3 controllers and 3 brokers, each its own process (ids and pids
    in nodes.txt), so that any node can be killed with SIGKILL and restarted. `overrides`:
    more broker settings (KEY=VALUE)."""

    def __init__(self, data_dir, overrides=()):
        self.data_dir = str(data_dir)
        for _ in range(50):
            base = random.randint(20000, 40000)
            if ports_free([base + i for i in range(3)] + [base + 100 + i for i in range(3)]):
                break
        self.base = base
        self.bootstrap = ",".join(f"127.0.0.1:{base + i}" for i in range(3))
        self.voters = ",".join(f"{1001 + i}@127.0.0.1:{base + 100 + i}" for i in range(3))
        self.log = open(os.path.join(self.data_dir, "cluster.log"), "ab")
        self.proc = subprocess.Popen(
            [BIN, "cluster", "--base-port", str(base), "--data-dir", self.data_dir,
             "--override", "replica.lag.time.max.ms=5000",
             "--controller-override", "broker.session.timeout.ms=4000",
             *[arg for o in overrides for arg in ("--override", o)]],
            stdout=self.log, stderr=self.log)
        self.restarted = []

    def nodes(self):
        """name -> (pid, command) from nodes.txt."""
        path = os.path.join(self.data_dir, "nodes.txt")
        out = {}
        with open(path) as f:
            for line in f:
                name, pid, command = line.rstrip("\n").split("\t", 2)
                out[name] = (int(pid.split()[1]), command)
        return out

    def quorum(self):
        return subprocess.run([BIN, "metadata-quorum", "--voters", self.voters],
                              capture_output=True, text=True, timeout=30).stdout

    def wait_ready(self, brokers=3, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if os.path.exists(os.path.join(self.data_dir, "nodes.txt")):
                out = self.quorum()
                live = [l for l in out.splitlines() if l.startswith("broker ") and "fenced" not in l]
                if len(live) >= brokers and "active true" in out:
                    return
            time.sleep(0.2)
        raise AssertionError(f"cluster not ready: {self.quorum()}")

    def active_controller(self):
        m = re.search(r"controller (\d+): .*active true", self.quorum())
        assert m, self.quorum()
        return f"controller-{int(m.group(1)) - 1000}"

    def kill(self, name):
        pid, _ = self.nodes()[name]
        os.kill(pid, signal.SIGKILL)

    def restart(self, name):
        _, command = self.nodes()[name]
        log = open(os.path.join(self.data_dir, name, "node.log"), "ab")
        self.restarted.append(subprocess.Popen(command.split(" "), stdout=log, stderr=log))

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        for p in self.restarted:
            p.kill()
            p.wait()


@pytest.fixture
def cluster(tmp_path):
    c = LocalCluster(tmp_path)
    try:
        c.wait_ready()
        yield c
    finally:
        c.stop()


@pytest.fixture
def broker(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    b = BrokerProcess(data).start()
    yield b
    b.stop(kill=True)
