// One kafkajs member of a consumer group, run as its own process by
// tests/clients/test_group_clients.py: node group_member.js BOOTSTRAP TOPIC GROUP
// (BOOTSTRAP: host:port, comma-separated).
// It subscribes from the beginning, lets kafkajs commit after each batch, and prints one JSON
// object a line on stdout, as group_member.py does:
//   {"event": "assigned", "partitions": [...]}  after each rebalance
//   {"event": "record", "partition": P, "offset": O, "value": "..."}
// SIGTERM disconnects cleanly (the member leaves the group) and exits 0.
const { Kafka, logLevel } = require("kafkajs");

const [addr, topic, group] = process.argv.slice(2);

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

async function main() {
  const kafka = new Kafka({
    clientId: "kafkajs-member",
    brokers: addr.split(","),
    logLevel: logLevel.ERROR,
    retry: { retries: 20, initialRetryTime: 100, maxRetryTime: 1000 },
  });
  const consumer = kafka.consumer({
    groupId: group,
    sessionTimeout: 6000,
    heartbeatInterval: 500,
    rebalanceTimeout: 10000,
    // Heartbeats go between fetches: a short long-poll lets a rebalance be noticed soon.
    maxWaitTimeInMs: 500,
  });
  consumer.on(consumer.events.GROUP_JOIN, (e) => {
    const partitions = (e.payload.memberAssignment[topic] || []).slice().sort((a, b) => a - b);
    emit({ event: "assigned", partitions });
  });
  let stopping = false;
  process.on("SIGTERM", async () => {
    if (stopping) return;
    stopping = true;
    await consumer.disconnect();
    process.exit(0);
  });
  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  await consumer.run({
    autoCommit: true,
    eachMessage: async ({ partition, message }) => {
      emit({
        event: "record",
        partition,
        offset: Number(message.offset),
        value: message.value.toString(),
      });
    },
  });
}

main().catch((e) => {
  emit({ event: "error", error: String(e && e.stack ? e.stack : e) });
  process.exit(1);
});
