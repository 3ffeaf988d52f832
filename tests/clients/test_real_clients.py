"""Unmodified Kafka clients against a real faultline broker: kcat (librdkafka from
Debian), confluent-kafka (bundled librdkafka 2.x), kafka-python and aiokafka. Every record must
come back, in order per partition, with key, value, headers and timestamp intact,
including after a restart."""

import os
import socket
import struct
import subprocess
import time
import uuid

import pytest
from confluent_kafka import Consumer as CKConsumer
from confluent_kafka import Producer as CKProducer
from confluent_kafka import TopicPartition as CKTopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import BrokerProcess


def topic_name(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def create_topic(addr, name, partitions):
    admin = AdminClient({"bootstrap.servers": addr})
    futures = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    futures[name].result(timeout=30)


def ck_produce(addr, topic, records, compression="none", idempotence=True):
    """records: list of (partition or None, key, value, headers, timestamp_ms).
    Returns the delivery reports (partition, offset, value) in delivery order."""
    delivered = []
    errors = []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(err)
        else:
            delivered.append((msg.partition(), msg.offset(), msg.value()))

    p = CKProducer(
        {
            "bootstrap.servers": addr,
            "compression.type": compression,
            "enable.idempotence": idempotence,
            "acks": "all",
            "linger.ms": 5,
        }
    )
    for partition, key, value, headers, ts in records:
        kwargs = dict(key=key, value=value, headers=headers, timestamp=ts, on_delivery=on_delivery)
        if partition is not None:
            kwargs["partition"] = partition
        p.produce(topic, **kwargs)
    remaining = p.flush(30)
    assert remaining == 0, f"{remaining} records not delivered"
    assert not errors, errors
    return delivered


def ck_consume_all(addr, topic, partitions, expected):
    c = CKConsumer(
        {
            "bootstrap.servers": addr,
            "group.id": "faultline-test-unused",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    c.assign([CKTopicPartition(topic, p, 0) for p in range(partitions)])
    out = []
    deadline = time.time() + 60
    while len(out) < expected and time.time() < deadline:
        msg = c.poll(0.5)
        if msg is None:
            continue
        assert msg.error() is None, msg.error()
        out.append(msg)
    c.close()
    assert len(out) == expected, f"read {len(out)} of {expected}"
    return out


@pytest.mark.parametrize("compression", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_confluent_kafka_round_trip(broker, compression):
    topic = topic_name(f"ck-{compression}")
    create_topic(broker.addr, topic, 3)
    base_ts = 1_700_000_000_000
    records = []
    for i in range(600):
        key = f"key-{i % 17}".encode() if i % 5 else None
        headers = [("h1", f"one-{i}".encode()), ("h1", b"repeated"), ("empty", b"")] if i % 2 else None
        records.append((None if key else i % 3, key, f"value-{i}".encode(), headers, base_ts + i))
    delivered = ck_produce(broker.addr, topic, records, compression=compression)
    assert len(delivered) == len(records)
    msgs = ck_consume_all(broker.addr, topic, 3, len(records))
    by_value = {r[2]: r for r in records}
    last_offset = {}
    for m in msgs:
        _, key, value, headers, ts = by_value[m.value()]
        assert m.key() == key
        assert (m.headers() or None) == (headers or None)
        assert m.timestamp()[1] == ts
        assert m.offset() > last_offset.get(m.partition(), -1), "offsets go forward per partition"
        last_offset[m.partition()] = m.offset()
    # Per partition, records come back in the order they were produced.
    produced_order = {}
    for p, off, value in sorted(delivered, key=lambda d: (d[0], d[1])):
        produced_order.setdefault(p, []).append(value)
    consumed_order = {}
    for m in msgs:
        consumed_order.setdefault(m.partition(), []).append(m.value())
    assert consumed_order == produced_order


def test_kcat_round_trip_with_keys_and_headers(broker):
    topic = topic_name("kcat")
    lines = "".join(f"k{i % 4}:value {i}\n" for i in range(200))
    subprocess.run(
        ["kcat", "-P", "-b", broker.addr, "-t", topic, "-K:", "-H", "source=kcat", "-z", "gzip"],
        input=lines.encode(),
        check=True,
        timeout=60,
    )
    out = subprocess.run(
        ["kcat", "-C", "-b", broker.addr, "-t", topic, "-o", "beginning", "-e", "-f", "%p|%o|%k|%s|%h\n"],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout.decode()
    rows = [l.split("|") for l in out.splitlines() if l]
    assert len(rows) == 200
    assert all(r[4] == "source=kcat" for r in rows)
    values = [r[3] for r in rows]
    assert sorted(values, key=lambda v: int(v.split()[1])) == [f"value {i}" for i in range(200)]
    for r in rows:
        assert r[2] == f"k{int(r[3].split()[1]) % 4}"


def test_kcat_reads_large_records_with_a_small_fetch_max_bytes(broker):
    """KIP-74: the response's max_bytes bounds the first partition too. A client whose
    fetch.max.bytes is below its max.partition.fetch.bytes used to get a response larger
    than receive.message.max.bytes, refuse it and retry for ever."""
    topic = topic_name("kip74")
    create_topic(broker.addr, topic, 1)
    lines = "".join(str(i) * 900_000 + "\n" for i in range(5))
    subprocess.run(
        ["kcat", "-P", "-b", broker.addr, "-t", topic, "-p", "0"],
        input=lines.encode(),
        check=True,
        timeout=60,
    )
    out = subprocess.run(
        [
            "kcat", "-C", "-b", broker.addr, "-t", topic, "-p", "0", "-o", "beginning", "-e",
            "-X", "fetch.max.bytes=1000000",
            "-X", "max.partition.fetch.bytes=20000000",
            "-X", "receive.message.max.bytes=1000512",
            "-f", "%o %S\n",
        ],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout.decode()
    assert out.split() == ["0", "900000", "1", "900000", "2", "900000", "3", "900000", "4", "900000"]


def test_kafka_python_round_trip(broker):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    topic = topic_name("kp")
    create_topic(broker.addr, topic, 2)
    producer = KafkaProducer(bootstrap_servers=broker.addr, acks="all", compression_type="gzip")
    futures = []
    for i in range(300):
        futures.append(
            producer.send(
                topic,
                key=f"k{i % 9}".encode(),
                value=f"kp-{i}".encode(),
                headers=[("n", str(i).encode())],
                timestamp_ms=1_600_000_000_000 + i,
            )
        )
    producer.flush(30)
    metas = [f.get(timeout=30) for f in futures]
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=broker.addr, group_id=None, auto_offset_reset="earliest", enable_auto_commit=False)
    consumer.assign([TopicPartition(topic, 0), TopicPartition(topic, 1)])
    consumer.seek_to_beginning()
    got = []
    deadline = time.time() + 60
    while len(got) < 300 and time.time() < deadline:
        for _, msgs in consumer.poll(timeout_ms=500).items():
            got.extend(msgs)
    consumer.close()
    assert len(got) == 300
    by_offset = {(m.partition, m.offset): m for m in got}
    for i, meta in enumerate(metas):
        m = by_offset[(meta.partition, meta.offset)]
        assert m.value == f"kp-{i}".encode()
        assert m.key == f"k{i % 9}".encode()
        assert m.headers == [("n", str(i).encode())]
        assert m.timestamp == 1_600_000_000_000 + i


@pytest.mark.parametrize("kill", [False, True], ids=["sigterm", "sigkill"])
def test_records_survive_restart(tmp_path, kill):
    data = tmp_path / "data"
    data.mkdir()
    b = BrokerProcess(data).start()
    try:
        topic = topic_name("restart")
        create_topic(b.addr, topic, 2)
        records = [(i % 2, f"k{i}".encode(), f"before-{i}".encode(), [("i", str(i).encode())], 1_650_000_000_000 + i) for i in range(400)]
        delivered = ck_produce(b.addr, topic, records)
        b.stop(kill=kill)
        b.start()
        # Same offsets as acknowledged, and new records continue after them.
        more = ck_produce(b.addr, topic, [(0, b"k", b"after", None, 1_650_000_001_000)])
        assert more[0][1] == max(off for p, off, _ in delivered if p == 0) + 1
        msgs = ck_consume_all(b.addr, topic, 2, 401)
        seen = {(m.partition(), m.offset()): m.value() for m in msgs}
        for p, off, value in delivered:
            assert seen[(p, off)] == value
    finally:
        b.stop(kill=True)


def test_torn_tail_is_truncated_on_recovery(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    b = BrokerProcess(data).start()
    try:
        topic = topic_name("torn")
        create_topic(b.addr, topic, 1)
        delivered = ck_produce(b.addr, topic, [(0, None, f"r{i}".encode(), None, 1_700_000_000_000 + i) for i in range(100)])
        b.stop()
        segment = sorted((data / f"{topic}-0").glob("*.log"))[-1]
        with open(segment, "ab") as f:
            # Half a batch header: what a crash in the middle of a write leaves.
            f.write(struct.pack(">qi", 100, 500) + b"\x00" * 20)
        b.start()
        msgs = ck_consume_all(b.addr, topic, 1, 100)
        assert [m.value() for m in msgs] == [f"r{i}".encode() for i in range(100)]
        after = ck_produce(b.addr, topic, [(0, None, b"next", None, 1_700_000_000_200)])
        assert after[0][1] == 100
    finally:
        b.stop(kill=True)


def test_malformed_requests_never_take_the_broker_down(broker):
    host, port = "127.0.0.1", broker.port
    payloads = [
        struct.pack(">i", 2_000_000_000),  # oversized frame
        struct.pack(">i", -5),  # negative size
        struct.pack(">i", 3) + b"abc",  # shorter than a header
        struct.pack(">ihhi", 8, 999, 0, 1),  # unknown API key
        struct.pack(">ihhi", 8, 0, 99, 1),  # unsupported Produce version
        struct.pack(">i", 30) + struct.pack(">hhi", 3, 9, 7) + os.urandom(22),  # garbage Metadata body
        struct.pack(">i", 100) + b"\x00" * 10,  # truncated frame, then close
        # Array lengths that claim 2^31 elements (an allocation bomb for the codec).
        struct.pack(">ihhihi", 14, 3, 1, 1, -1, 0x7FFFFFFF),
        struct.pack(">ihhih", 15, 3, 9, 1, -1) + b"\x00" + bytes([0xFF, 0xFF, 0xFF, 0xFF, 0x0F]),
    ]
    for payload in payloads:
        with socket.create_connection((host, port), timeout=5) as s:
            s.sendall(payload)
            s.settimeout(2)
            try:
                s.recv(1024)
            except (socket.timeout, ConnectionResetError):
                pass
    # An unknown ApiVersions version gets a v0 answer with UNSUPPORTED_VERSION (KIP-511).
    with socket.create_connection((host, port), timeout=5) as s:
        body = struct.pack(">hhih", 18, 99, 42, -1)
        s.sendall(struct.pack(">i", len(body)) + body)
        size = struct.unpack(">i", s.recv(4))[0]
        resp = b""
        while len(resp) < size:
            resp += s.recv(size - len(resp))
        correlation_id, error_code = struct.unpack(">ih", resp[:6])
        assert correlation_id == 42 and error_code == 35
    assert broker.alive(), broker.log()
    topic = topic_name("after-garbage")
    delivered = ck_produce(broker.addr, topic, [(None, b"k", b"still alive", None, 1_700_000_000_000)])
    assert len(delivered) == 1


def test_aiokafka_round_trip(broker):
    import asyncio

    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    topic = topic_name("aio")
    create_topic(broker.addr, topic, 2)

    async def run():
        producer = AIOKafkaProducer(bootstrap_servers=broker.addr, compression_type="gzip", enable_idempotence=True)
        await producer.start()
        metas = []
        for i in range(120):
            key = f"k{i % 7}".encode() if i % 4 else None
            metas.append(
                await producer.send_and_wait(
                    topic, key=key, value=f"aio-{i}".encode(), headers=[("i", str(i).encode())], timestamp_ms=1_710_000_000_000 + i
                )
            )
        await producer.stop()
        consumer = AIOKafkaConsumer(bootstrap_servers=broker.addr, enable_auto_commit=False, auto_offset_reset="earliest")
        await consumer.start()
        consumer.assign([TopicPartition(topic, 0), TopicPartition(topic, 1)])
        await consumer.seek_to_beginning()
        got = []
        deadline = time.time() + 60
        while len(got) < 120 and time.time() < deadline:
            for _, msgs in (await consumer.getmany(timeout_ms=500)).items():
                got.extend(msgs)
        await consumer.stop()
        return metas, got

    metas, got = asyncio.run(run())
    assert len(got) == 120
    by_offset = {(m.partition, m.offset): m for m in got}
    for i, meta in enumerate(metas):
        m = by_offset[(meta.partition, meta.offset)]
        assert m.value == f"aio-{i}".encode()
        assert m.key == (f"k{i % 7}".encode() if i % 4 else None)
        assert list(m.headers) == [("i", str(i).encode())]
        assert m.timestamp == 1_710_000_000_000 + i


def test_console_tools(broker):
    """faultline topics / produce / consume, as a user at a terminal would run them."""
    from conftest import BIN

    def run(*args, stdin=None):
        return subprocess.run([BIN, *args], input=stdin, capture_output=True, timeout=60)

    topic = topic_name("console")
    out = run("topics", "--bootstrap-server", broker.addr, "create", "--topic", topic, "--partitions", "3", "--config", "min.insync.replicas=1")
    assert out.returncode == 0, out.stderr
    assert out.stdout.decode().strip() == f"Created topic {topic}."
    again = run("topics", "--bootstrap-server", broker.addr, "create", "--topic", topic)
    assert again.returncode == 1 and b"TopicAlreadyExists" in again.stderr, again
    assert topic in run("topics", "--bootstrap-server", broker.addr, "list").stdout.decode().split()
    described = run("topics", "--bootstrap-server", broker.addr, "describe", "--topic", topic).stdout.decode()
    assert f"Topic: {topic}\tTopicId: " in described and "PartitionCount: 3\tReplicationFactor: 1" in described
    assert described.count("\tLeader: 1\t") == 3

    lines = "".join(f"k{i}:line {i}\n" for i in range(30)).encode()
    out = run("produce", "--bootstrap-server", broker.addr, "--topic", topic, "--key-separator", ":", "--compression", "zstd", stdin=lines)
    assert out.returncode == 0, out.stderr
    out = run("consume", "--bootstrap-server", broker.addr, "--topic", topic, "--from-beginning", "--print-key", "--max-messages", "30")
    assert out.returncode == 0, out.stderr
    got = sorted(out.stdout.decode().splitlines(), key=lambda l: int(l.split()[-1]))
    assert got == [f"k{i}\tline {i}" for i in range(30)]

    bad = run("produce", "--bootstrap-server", broker.addr, "--topic", topic, "--acks", "2", stdin=b"x\n")
    assert bad.returncode == 2 and b"--acks" in bad.stderr, bad
    out = run("topics", "--bootstrap-server", broker.addr, "delete", "--topic", topic)
    assert out.returncode == 0 and out.stdout.decode().strip() == f"Deleted topic {topic}."
    assert topic not in run("topics", "--bootstrap-server", broker.addr, "list").stdout.decode().split()


def test_bad_broker_settings_are_refused_with_file_line_and_field(tmp_path):
    from conftest import BIN

    props = tmp_path / "server.properties"
    props.write_text("node.id=1\n# comment\nlog.flush.interval.messages=sometimes\n")
    out = subprocess.run([BIN, "broker", "--config", str(props), "--data-dir", str(tmp_path / "d")], capture_output=True, timeout=30)
    assert out.returncode == 2, out
    assert f"{props}:3: log.flush.interval.messages: expected a whole number".encode() in out.stderr, out.stderr
    out = subprocess.run([BIN, "broker", "--override", "num.partitions=0", "--data-dir", str(tmp_path / "d")], capture_output=True, timeout=30)
    assert out.returncode == 2 and b"--override num.partitions: 0 is out of range" in out.stderr, out.stderr


def test_confluent_kafka_group_consumer_resumes_after_committed_offset(tmp_path):
    """A subscribed consumer (group.id + subscribe: FindCoordinator, JoinGroup, SyncGroup,
    Heartbeat, OffsetCommit, OffsetFetch, LeaveGroup) consumes part of a topic and commits;
    a second consumer of the same group, after a broker restart (offsets loaded back from
    __consumer_offsets), starts right after the committed offset."""
    data = tmp_path / "data"
    data.mkdir()
    b = BrokerProcess(data, ["--override", "group.initial.rebalance.delay.ms=0"]).start()
    try:
        topic = topic_name("ck-group")
        create_topic(b.addr, topic, 1)
        ck_produce(b.addr, topic, [(0, None, f"v-{i}".encode(), None, 1_700_000_000_000 + i) for i in range(20)])
        group = f"group-{uuid.uuid4().hex[:8]}"

        def consumer():
            c = CKConsumer(
                {
                    "bootstrap.servers": b.addr,
                    "group.id": group,
                    "enable.auto.commit": False,
                    "auto.offset.reset": "earliest",
                    "session.timeout.ms": 10000,
                }
            )
            c.subscribe([topic])
            return c

        def poll_values(c, n):
            values = []
            deadline = time.time() + 60
            while len(values) < n and time.time() < deadline:
                msg = c.poll(0.5)
                if msg is None:
                    continue
                assert msg.error() is None, msg.error()
                values.append((msg.offset(), msg.value()))
            return values

        first = consumer()
        got = poll_values(first, 8)
        assert [v for _, v in got[:8]] == [f"v-{i}".encode() for i in range(8)], got
        # Commit after the 8th record (offset 7): the next to read is 8.
        first.commit(offsets=[CKTopicPartition(topic, 0, 8)], asynchronous=False)
        committed = first.committed([CKTopicPartition(topic, 0)], timeout=30)
        assert committed[0].offset == 8, committed
        first.close()

        b.stop()
        b.start()
        second = consumer()
        got = poll_values(second, 12)
        assert got and got[0] == (8, b"v-8"), got[:3]
        assert [v for _, v in got] == [f"v-{i}".encode() for i in range(8, 20)]
        second.close()
    finally:
        b.stop(kill=True)
