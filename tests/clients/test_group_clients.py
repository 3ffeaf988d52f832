"""Consumer groups with real clients: kcat -G, confluent-kafka subscribe(), kafka-python
and aiokafka with a group_id, kafkajs consumer.run().

On a standalone broker, for each client: one member consumes the first records and commits,
and leaves; two members in separate processes share the topic; one is killed with SIGKILL
(no LeaveGroup), and once its session times out the other takes over its partitions. Every
record produced must be consumed by the group (at least once: duplicates allowed, none
missing), the second phase starts where the first one committed, and `faultline
consumer-groups --describe` shows the survivor holding every partition with no lag.

On a cluster of 3 brokers (a topic with replication factor 3), for each client: two members
share the topic and commit; while they consume more, the broker that coordinates the group
and one member are killed with SIGKILL at once; the coordinator moves to another broker,
which loads the committed offsets, and the survivor takes over every partition and goes on
from the committed offsets; every record is consumed and nothing is left to read."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest
from confluent_kafka import Producer

from conftest import BIN, BrokerProcess, LocalCluster

HERE = os.path.dirname(os.path.abspath(__file__))
NODE_DIR = os.path.join(HERE, "node")
PARTITIONS = 4
BATCH = 40  # records per batch, three batches
CLIENTS = ["kcat", "confluent-kafka", "kafka-python", "aiokafka", "kafkajs"]


@pytest.fixture
def group_broker(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    b = BrokerProcess(data, ["--override", "group.initial.rebalance.delay.ms=0"]).start()
    yield b
    b.stop(kill=True)
    # Shown by pytest only when the test failed.
    print(f"broker log {os.path.abspath(b.log_path)}, last lines:\n{b.log()[-2000:]}")


@pytest.fixture
def group_cluster(tmp_path):
    c = LocalCluster(tmp_path, ["group.initial.rebalance.delay.ms=0"])
    try:
        c.wait_ready()
        yield c
    finally:
        c.stop()
        # Shown by pytest only when the test failed.
        for name in sorted(c.nodes()) if os.path.exists(os.path.join(c.data_dir, "nodes.txt")) else []:
            print(f"{name} log: {os.path.join(c.data_dir, name, 'node.log')}")


def names(client):
    """A fresh topic and group for one test."""
    tag = uuid.uuid4().hex[:6]
    return f"grp-{client}-{tag}", f"g-{client}-{tag}"


def create_topic(addr, topic, replication_factor=1, config=None):
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": addr})
    new = NewTopic(topic, num_partitions=PARTITIONS, replication_factor=replication_factor, config=config or {})
    admin.create_topics([new])[topic].result(timeout=30)


def member_argv(client, addr, topic, group):
    if client == "kcat":
        return [
            "kcat", "-b", addr, "-G", group, "-u", "-f", "%p %o %s\\n",
            "-X", "client.id=kcat-member",
            "-X", "auto.offset.reset=earliest",
            "-X", "session.timeout.ms=6000",
            "-X", "heartbeat.interval.ms=500",
            "-X", "auto.commit.interval.ms=100",
            topic,
        ]
    if client == "kafkajs":
        return ["node", os.path.join(NODE_DIR, "group_member.js"), addr, topic, group]
    return [sys.executable, os.path.join(HERE, "group_member.py"), client, addr, topic, group]


class Member:
    """A group member process; its stdout (and kcat's stderr) read into `records`
    ([(partition, offset, value)]) and `assignments` (each rebalance's partitions)."""

    def __init__(self, client, addr, topic, group, name):
        self.client = client
        self.name = name
        self.records = []
        self.assignments = []
        self.errors = []
        self.lines = []
        self.lock = threading.Lock()
        self.proc = subprocess.Popen(
            member_argv(client, addr, topic, group),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=NODE_DIR if client == "kafkajs" else None,
        )
        self.threads = [
            threading.Thread(target=self._read, args=(self.proc.stdout, "out"), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, "err"), daemon=True),
        ]
        for t in self.threads:
            t.start()

    def _read(self, stream, which):
        for raw in stream:
            line = raw.decode(errors="replace").rstrip("\n")
            with self.lock:
                self.lines.append(f"{which}: {line}")
                if len(self.lines) > 400:
                    del self.lines[:100]
                self._parse(line, which)

    def _parse(self, line, which):
        if self.client == "kcat":
            if which == "err":
                # "% Group G rebalanced (memberid M): assigned: t [0], t [1]"
                if "rebalanced" in line and "assigned:" in line:
                    parts = line.split("assigned:", 1)[1].split(",")
                    self.assignments.append(sorted(int(p.split("[")[1].split("]")[0]) for p in parts if "[" in p))
                elif line.startswith("% ERROR") or "FATAL" in line:
                    self.errors.append(line)
                return
            partition, offset, value = line.split(" ", 2)
            self.records.append((int(partition), int(offset), value))
            return
        if which == "err":
            return
        try:
            event = json.loads(line)
        except ValueError:
            return
        if event["event"] == "assigned":
            self.assignments.append(event["partitions"])
        elif event["event"] == "record":
            self.records.append((event["partition"], event["offset"], event["value"]))
        else:
            self.errors.append(event)

    def values(self, since=0):
        """The values consumed, from the `since`-th record on (see `count`)."""
        with self.lock:
            return {v for _, _, v in self.records[since:]}

    def count(self):
        with self.lock:
            return len(self.records)

    def assignment(self):
        with self.lock:
            return self.assignments[-1] if self.assignments else None

    def alive(self):
        return self.proc.poll() is None

    def output(self):
        with self.lock:
            return f"{self.name} ({self.client}) exit={self.proc.poll()} last lines:\n" + "\n".join(self.lines[-40:])

    def terminate(self):
        """SIGTERM: the client closes (commits, leaves the group)."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"{self.name} did not stop on SIGTERM: {self.output()}")
        for t in self.threads:
            t.join(timeout=5)

    def kill(self):
        if self.alive():
            self.proc.kill()
            self.proc.wait()


def wait_for(what, condition, members, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        for m in members:
            assert m.alive(), f"{m.name} exited while waiting for {what}: {m.output()}"
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}:\n" + "\n\n".join(m.output() for m in members))


def produce(addr, topic, start, count, timeout=30):
    """Values v-START .. v-(START+COUNT-1), round robin over the partitions, acks=all."""
    p = Producer({"bootstrap.servers": addr, "acks": "all", "linger.ms": 5})
    errors = []
    for i in range(start, start + count):
        p.produce(topic, value=f"v-{i}".encode(), partition=i % PARTITIONS, on_delivery=lambda err, _m: err and errors.append(err))
    assert p.flush(timeout) == 0
    assert not errors, errors
    return {f"v-{i}" for i in range(start, start + count)}


def consumer_groups(addr, group, *more):
    return subprocess.run(
        [BIN, "consumer-groups", "--bootstrap-server", addr, "--describe", "--group", group, *more],
        capture_output=True, timeout=60, text=True,
    )


def describe(addr, group):
    """`faultline consumer-groups --describe --group G`: the rows, as dicts by column."""
    out = consumer_groups(addr, group)
    assert out.returncode == 0, out
    lines = out.stdout.splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith("GROUP "))
    header = lines[start].split()
    rows = [dict(zip(header, l.split())) for l in lines[start + 1:] if l.strip()]
    return rows, out.stdout


def coordinator(addr, group):
    """The id of the broker coordinating `group`, from `--describe --state`."""
    out = consumer_groups(addr, group, "--state")
    assert out.returncode == 0, out
    m = re.search(r"^" + re.escape(group) + r"\s+\S+:\d+ \((\d+)\)", out.stdout, re.M)
    assert m, out.stdout
    return int(m.group(1))


def wait_no_lag(addr, group, consumer_id=None, timeout=30):
    """Until every partition has a committed offset at the log end (and, given
    `consumer_id`, is held by that member); returns the rows. A describe that fails (the
    coordinator moving in a cluster) is tried again."""
    deadline = time.time() + timeout
    while True:
        try:
            rows, text = describe(addr, group)
        except AssertionError as e:
            rows, text = [], str(e)
        ok = len(rows) == PARTITIONS and all(r["LAG"] == "0" for r in rows)
        if ok and consumer_id is not None:
            ok = all(r["CONSUMER-ID"] == consumer_id for r in rows)
        if ok:
            return rows
        assert time.time() < deadline, f"lag not 0 (holder {consumer_id}):\n{text}"
        time.sleep(0.3)


def require(client):
    tool = {"kcat": "kcat", "kafkajs": "node"}.get(client)
    if tool and shutil.which(tool) is None:
        pytest.fail(f"{tool} is not installed (tests/run-all installs it)")
    if client == "kafkajs" and not os.path.isdir(os.path.join(NODE_DIR, "node_modules", "kafkajs")):
        pytest.fail("kafkajs is not installed: run `npm ci` in tests/clients/node (tests/run-all does)")


def start_pair(client, addr, topic, group, members):
    """Members a then b (appended to `members`), once they share the partitions."""
    a = Member(client, addr, topic, group, "a")
    members.append(a)
    wait_for("member a's assignment", lambda: a.assignment(), [a])
    b = Member(client, addr, topic, group, "b")
    members.append(b)

    def shared():
        pa, pb = a.assignment(), b.assignment()
        return pa and pb and sorted(pa + pb) == list(range(PARTITIONS))

    wait_for("a and b to share the partitions", shared, [a, b])
    return a, b


@pytest.mark.parametrize("client", CLIENTS)
def test_group_members_share_take_over_and_commit(group_broker, client):
    require(client)
    addr = group_broker.addr
    topic, group = names(client)
    create_topic(addr, topic)

    # Phase 1: one member consumes the first batch, commits, and leaves.
    first_batch = produce(addr, topic, 0, BATCH)
    first = Member(client, addr, topic, group, "first")
    members = [first]
    try:
        wait_for("the first member to consume the first batch", lambda: first_batch <= first.values(), [first])
        first.terminate()
        wait_no_lag(addr, group)
        rows, text = describe(addr, group)
        assert all(r["CONSUMER-ID"] == "-" for r in rows), text

        # Phase 2: two members share the partitions.
        a, b = start_pair(client, addr, topic, group, members)
        b_partitions = b.assignment()
        second_batch = produce(addr, topic, BATCH, BATCH)
        wait_for("a and b to consume the second batch", lambda: second_batch <= a.values() | b.values(), [a, b])
        # The members started where the first one committed.
        assert not (first_batch & (a.values() | b.values())), "records of the committed first batch consumed again"

        # B dies without leaving; once its session times out, A takes over its partitions.
        b.kill()
        third_batch = produce(addr, topic, 2 * BATCH, BATCH)
        wait_for(
            "a to take over b's partitions and consume the third batch",
            lambda: a.assignment() == list(range(PARTITIONS)) and third_batch <= a.values(),
            [a],
            timeout=60,
        )
        b_third = {v for v in third_batch if int(v[2:]) % PARTITIONS in b_partitions}
        assert b_third and b_third <= a.values()

        everything = first_batch | second_batch | third_batch
        consumed = first.values() | a.values() | b.values()
        assert everything <= consumed, f"missing: {sorted(everything - consumed)[:10]}"
        assert consumed <= everything

        # The group as the broker sees it: a holds every partition, nothing left to read.
        rows = wait_no_lag(addr, group)
        holders = {r["CONSUMER-ID"] for r in rows}
        assert len(holders) == 1 and "-" not in holders, rows
        assert all(r["LOG-END-OFFSET"] == str(3 * BATCH // PARTITIONS) for r in rows), rows
        a.terminate()
        rows = wait_no_lag(addr, group)
        assert all(r["CONSUMER-ID"] == "-" for r in rows), rows
        for m in members:
            assert not m.errors, m.output()
    finally:
        for m in members:
            m.kill()


@pytest.mark.parametrize("client", CLIENTS)
def test_group_survives_its_coordinator_and_a_member_killed_on_a_cluster(group_cluster, client):
    require(client)
    addr = group_cluster.bootstrap
    topic, group = names(client)
    create_topic(addr, topic, replication_factor=3, config={"min.insync.replicas": "2"})
    first_batch = produce(addr, topic, 0, BATCH)
    members = []
    try:
        a, b = start_pair(client, addr, topic, group, members)
        wait_for("a and b to consume the first batch", lambda: first_batch <= a.values() | b.values(), [a, b])
        wait_no_lag(addr, group)
        old = coordinator(addr, group)
        seen_before = a.count()

        # While the members consume and commit the second batch, the coordinator and member
        # b die at once (SIGKILL: no LeaveGroup, nothing flushed); then the third batch.
        second_batch = produce(addr, topic, BATCH, BATCH)
        group_cluster.kill(f"broker-{old}")
        b.kill()
        t_kill = time.time()
        third_batch = produce(addr, topic, 2 * BATCH, BATCH, timeout=60)
        produced = time.time() - t_kill
        everything = first_batch | second_batch | third_batch
        wait_for(
            "a to take over every partition and consume the rest",
            lambda: a.assignment() == list(range(PARTITIONS)) and third_batch <= a.values()
            and everything <= a.values() | b.values(),
            [a],
            timeout=90,
        )
        took_over = time.time() - t_kill
        # The new coordinator had the committed offsets: nothing of the first batch again.
        again = first_batch & a.values(since=seen_before)
        assert not again, f"{len(again)} records of the committed first batch consumed again, e.g. {sorted(again)[:5]}"
        consumed = a.values() | b.values()
        assert consumed <= everything

        rows = wait_no_lag(addr, group, timeout=60)
        holders = {r["CONSUMER-ID"] for r in rows}
        assert len(holders) == 1 and "-" not in holders, rows
        assert all(r["LOG-END-OFFSET"] == str(3 * BATCH // PARTITIONS) for r in rows), rows
        new = coordinator(addr, group)
        assert new != old, f"broker {old} was killed but still coordinates {group}"
        print(f"coordinator {old} -> {new}; after the kill, the third batch acknowledged in {produced:.1f} s, "
              f"a holding every partition and done with it in {took_over:.1f} s")
        print(f"a's errors (a broker died): {a.errors[:5]}")
        a.terminate()
        rows = wait_no_lag(addr, group)
        assert all(r["CONSUMER-ID"] == "-" for r in rows), rows
    finally:
        for m in members:
            m.kill()
