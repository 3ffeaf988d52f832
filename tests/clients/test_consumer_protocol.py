"""KIP-848 with a real client: confluent-kafka (librdkafka) with group.protocol=consumer.

Two members in separate processes share a topic through the broker's assignor; one is
killed with SIGKILL (no leave), and once its session (`group.consumer.session.timeout.ms`)
expires the other is given every partition. Every record is consumed (at least once),
the committed offsets (OffsetFetch) reach every partition's log end, and
ConsumerGroupDescribe shows the survivor holding every partition. Standalone, and on a
cluster of 3 brokers where the coordinator is killed too (the new coordinator rebuilds
the group from __consumer_offsets)."""

import time

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from conftest import BrokerProcess, LocalCluster
from test_group_clients import (
    PARTITIONS,
    BATCH,
    Member,
    create_topic,
    names,
    produce,
    start_pair,
    wait_for,
)

CLIENT = "confluent-kafka-consumer"
SETTINGS = ["group.consumer.session.timeout.ms=6000", "group.consumer.heartbeat.interval.ms=500"]


@pytest.fixture
def consumer_broker(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    b = BrokerProcess(data, [arg for s in SETTINGS for arg in ("--override", s)]).start()
    yield b
    b.stop(kill=True)
    print(f"broker log last lines:\n{b.log()[-3000:]}")


@pytest.fixture
def consumer_cluster(tmp_path):
    c = LocalCluster(tmp_path, SETTINGS)
    try:
        c.wait_ready()
        yield c
    finally:
        c.stop()


def lag(addr, topic, group):
    """Per partition: log end offset minus committed offset (None when nothing committed)."""
    admin = AdminClient({"bootstrap.servers": addr})
    request = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    from confluent_kafka import ConsumerGroupTopicPartitions

    future = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group, request)])[group]
    committed = {tp.partition: tp.offset for tp in future.result(timeout=30).topic_partitions}
    probe = Consumer({"bootstrap.servers": addr, "group.id": f"{group}-probe"})
    try:
        ends = {p: probe.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(PARTITIONS)}
    finally:
        probe.close()
    return {p: (ends[p] - committed[p] if committed.get(p, -1) >= 0 else None) for p in range(PARTITIONS)}


def wait_no_lag(addr, topic, group, timeout=60):
    deadline = time.time() + timeout
    while True:
        try:
            current = lag(addr, topic, group)
        except Exception as e:  # the coordinator moving in a cluster
            current = repr(e)
        if isinstance(current, dict) and all(v == 0 for v in current.values()):
            return
        assert time.time() < deadline, f"lag not zero: {current}"
        time.sleep(0.3)


def holders(addr, group):
    """member id -> partitions, from ConsumerGroupDescribe (through the admin client)."""
    admin = AdminClient({"bootstrap.servers": addr})
    desc = admin.describe_consumer_groups([group])[group].result(timeout=30)
    return {m.member_id: sorted(tp.partition for tp in m.assignment.topic_partitions) for m in desc.members}


def share_kill_take_over(addr, topic, group, kill_coordinator=None):
    members = []
    try:
        first = produce(addr, topic, 0, BATCH)
        a, b = start_pair(CLIENT, addr, topic, group, members)
        wait_for("a and b to consume the first batch", lambda: first <= a.values() | b.values(), [a, b])
        b_partitions = b.assignment()
        b.kill()
        if kill_coordinator:
            kill_coordinator()
        second = produce(addr, topic, BATCH, BATCH)
        wait_for(
            "a to take over every partition and consume the second batch",
            lambda: a.assignment() == list(range(PARTITIONS)) and second <= a.values(),
            [a],
            timeout=90,
        )
        b_second = {v for v in second if int(v[2:]) % PARTITIONS in b_partitions}
        assert b_second and b_second <= a.values()
        everything = first | second
        consumed = a.values() | b.values()
        assert everything <= consumed, f"missing: {sorted(everything - consumed)[:10]}"
        wait_no_lag(addr, topic, group)
        deadline = time.time() + 30
        while True:
            try:
                held = holders(addr, group)
            except Exception as e:
                held = repr(e)
            if isinstance(held, dict) and list(held.values()) == [list(range(PARTITIONS))]:
                break
            assert time.time() < deadline, f"ConsumerGroupDescribe: {held}"
            time.sleep(0.3)
        for m in members:
            assert not m.errors, m.output()
        a.terminate()
    finally:
        for m in members:
            m.kill()


def test_consumer_protocol_members_share_and_survivor_takes_over(consumer_broker):
    addr = consumer_broker.addr
    topic, group = names("ck848")
    create_topic(addr, topic)
    share_kill_take_over(addr, topic, group)


def test_consumer_protocol_survives_its_coordinator_killed_on_a_cluster(consumer_cluster):
    addr = consumer_cluster.bootstrap
    topic, group = names("ck848c")
    create_topic(addr, topic, replication_factor=3, config={"min.insync.replicas": "2"})

    def kill_coordinator():
        admin = AdminClient({"bootstrap.servers": addr})
        desc = admin.describe_consumer_groups([group])[group].result(timeout=30)
        consumer_cluster.kill(f"broker-{desc.coordinator.id}")

    share_kill_take_over(addr, topic, group, kill_coordinator)
