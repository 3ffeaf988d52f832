"""Fixtures for the real-client tests: a faultline broker on a free loopback port.

The broker binary comes from FAULTLINE_BIN (tests/run-all builds it and sets it)."""

import os
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


@pytest.fixture
def broker(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    b = BrokerProcess(data).start()
    yield b
    b.stop(kill=True)
