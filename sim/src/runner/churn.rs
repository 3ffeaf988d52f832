//! Metadata churn (`[churn]`): an admin client creates and deletes topics all run long,
//! reusing a small pool of names, so the controller quorum commits topic records while the
//! nemesis crashes and cuts it, and brokers create and remove replicas, and find
//! directories left by an earlier topic of the same name. After healing, every broker's
//! metadata must agree with what the controller acknowledged: a topic whose creation was
//! acknowledged (and never deleted since) exists with its partitions, and a topic whose
//! deletion was acknowledged (and never created again) does not.
//!
//! [`Ledger`] is the pure part (what was asked, what was answered, what must hold); it is
//! built and tested in the normal build. The loop and the final check run in the lab.

use crate::invariants::InvariantViolation;
use std::collections::{BTreeMap, BTreeSet};

/// What the lab may conclude about a name from the answers it got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Created with this many partitions as incarnation `generation`, acknowledged, not
    /// deleted since.
    Exists { partitions: i32, generation: u64 },
    /// Deletion acknowledged, not created since.
    Absent,
    /// The last answer was an error or none: either may be true.
    Unknown,
}

/// Every churn operation's outcome, per topic name, in order.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    fates: BTreeMap<String, Fate>,
    /// Names with an operation whose outcome is unknown: such a request may still take
    /// effect at any later time (a broker forwarding it to the controller retries it), so
    /// nothing can be concluded about the name from then on.
    uncertain: BTreeSet<String>,
    /// Incarnations made so far (every creation attempt is one).
    generations: u64,
    /// Records the churn client wrote ("NAME@GENERATION/PARTITION") and whether each was
    /// acknowledged.
    writes: BTreeMap<String, bool>,
}

/// The churn's one rule.
pub const RULE: &str = "acknowledged-topic-changes";

/// A breach of [`RULE`] at `time_ns`.
fn breach(time_ns: u64, message: String) -> InvariantViolation {
    InvariantViolation {
        time_ns,
        rule: RULE.into(),
        message,
    }
}

/// The value the churn client writes to `partition` of incarnation `generation` of `name`.
pub fn churn_value(name: &str, generation: u64, partition: i32) -> String {
    format!("{name}@{generation}/{partition}")
}

impl Ledger {
    /// A creation with `partitions`; `acknowledged`: the controller said it committed it.
    /// Returns the incarnation's generation.
    pub fn created(&mut self, name: &str, partitions: i32, acknowledged: bool) -> u64 {
        self.generations += 1;
        let generation = self.generations;
        if !acknowledged {
            self.uncertain.insert(name.to_string());
        }
        let fate = if acknowledged && !self.uncertain.contains(name) {
            Fate::Exists {
                partitions,
                generation,
            }
        } else {
            Fate::Unknown
        };
        self.fates.insert(name.to_string(), fate);
        generation
    }

    /// A record written with `churn_value`; `acknowledged` by acks=all.
    pub fn wrote(&mut self, value: String, acknowledged: bool) {
        self.writes.insert(value, acknowledged);
    }

    /// Topics that must exist now, with their partitions and generation.
    pub fn existing(&self) -> Vec<(String, i32, u64)> {
        self.fates
            .iter()
            .filter_map(|(n, f)| match f {
                Fate::Exists {
                    partitions,
                    generation,
                } => Some((n.clone(), *partitions, *generation)),
                _ => None,
            })
            .collect()
    }

    /// What reading back partition `partition` of `name` (which must exist as `generation`)
    /// breaks: a record acknowledged in an earlier incarnation of the name (deleted data
    /// that came back), or this incarnation's acknowledged record missing. A record whose
    /// write was never acknowledged may land in a later incarnation (the producer names
    /// topics, not ids, and retries), so it proves nothing.
    pub fn judge_read(
        &self,
        name: &str,
        generation: u64,
        partition: i32,
        values: &[String],
        time_ns: u64,
    ) -> Vec<InvariantViolation> {
        let mut out = Vec::new();
        let fail =
            |out: &mut Vec<InvariantViolation>, message: String| out.push(breach(time_ns, message));
        let own = churn_value(name, generation, partition);
        for v in values {
            if *v == own {
                continue;
            }
            if self.writes.get(v) == Some(&true) {
                fail(
                    &mut out,
                    format!(
                        "{name}/{partition} (incarnation {generation}) holds {v:?}, acknowledged in an earlier incarnation that was deleted: deleted data came back"
                    ),
                );
            }
        }
        if self.writes.get(&own) == Some(&true) && !values.contains(&own) {
            fail(
                &mut out,
                format!("{name}/{partition}: the acknowledged record {own:?} is missing"),
            );
        }
        out
    }

    /// A deletion; `acknowledged`: the controller said it committed it.
    pub fn deleted(&mut self, name: &str, acknowledged: bool) {
        if !acknowledged {
            self.uncertain.insert(name.to_string());
        }
        let fate = if acknowledged && !self.uncertain.contains(name) {
            Fate::Absent
        } else {
            Fate::Unknown
        };
        self.fates.insert(name.to_string(), fate);
    }

    pub fn fate(&self, name: &str) -> Option<Fate> {
        self.fates.get(name).copied()
    }

    /// What a broker's metadata (topic name -> partition count, churn topics only) breaks.
    pub fn judge(
        &self,
        broker: &str,
        seen: &BTreeMap<String, i32>,
        time_ns: u64,
    ) -> Vec<InvariantViolation> {
        let mut out = Vec::new();
        for (name, fate) in &self.fates {
            let message = match (fate, seen.get(name)) {
                (Fate::Exists { partitions: want, .. }, None) => format!(
                    "topic {name}: its creation ({want} partitions) was acknowledged and it was never deleted, but {broker}'s metadata has no such topic"
                ),
                (Fate::Exists { partitions: want, .. }, Some(got)) if got != want => format!(
                    "topic {name}: created with {want} partitions (acknowledged), {broker}'s metadata says {got}"
                ),
                (Fate::Absent, Some(got)) => format!(
                    "topic {name}: its deletion was acknowledged and it was not created again, but {broker}'s metadata still has it ({got} partitions)"
                ),
                _ => continue,
            };
            out.push(breach(time_ns, message));
        }
        out
    }
}

#[cfg(madsim)]
pub(super) use lab::{check_final_metadata, check_final_records, churn_loop};

#[cfg(madsim)]
mod lab {
    use super::{breach, churn_value, Ledger};
    use crate::invariants::InvariantViolation;
    use crate::runner::recorder::{event, Shared};
    use crate::runner::CLIENT_TIMEOUT;
    use crate::scenario::ChurnSpec;
    use bytes::Bytes;
    use faultline::client::{
        Acks, Client, Consumer, ConsumerConfig, NewTopic, Producer, ProducerConfig,
    };
    use faultline::record::codec::NewRecord;
    use madsim::time::{sleep, Instant};
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    /// Until `stop`: every `interval`, create a topic while fewer than `topics` may be
    /// alive, else delete the oldest. A creation takes the name freed most recently (one
    /// more name than may be alive), so a deleted name comes back one operation later: a
    /// broker that learns metadata every few seconds sees the name with another id and
    /// must not keep the old topic's logs. Incarnation `g` has `1 + g % partitions`
    /// partitions, so a stale topic also shows in the count.
    pub(crate) async fn churn_loop(
        spec: ChurnSpec,
        bootstrap: String,
        rec: Shared,
        stop: Arc<AtomicBool>,
        ledger: Arc<Mutex<Ledger>>,
    ) {
        let mut client = Client::new(&bootstrap, "churn", CLIENT_TIMEOUT);
        let mut producer: Option<Producer> = None;
        // Free names, the most recently freed last; alive names, oldest first.
        let mut free: Vec<String> = (0..=spec.topics)
            .rev()
            .map(|i| format!("churn-{i}"))
            .collect();
        let mut order: Vec<String> = Vec::new();
        let mut made = 0i32;
        while !stop.load(Ordering::SeqCst) {
            sleep(spec.interval).await;
            if stop.load(Ordering::SeqCst) {
                break;
            }
            if order.len() < spec.topics {
                let Some(name) = free.pop() else {
                    break;
                };
                made += 1;
                let partitions = 1 + made % spec.partitions;
                let topic = NewTopic {
                    name: name.clone(),
                    partitions,
                    replication_factor: spec.replication_factor,
                    configs: BTreeMap::new(),
                };
                let ok = matches!(
                    client.create_topics(&[topic]).await.as_deref(),
                    Ok([(_, Ok(()))])
                );
                let generation = ledger.lock().unwrap().created(&name, partitions, ok);
                if ok {
                    write_each_partition(
                        &mut producer,
                        &bootstrap,
                        &name,
                        generation,
                        partitions,
                        &ledger,
                    )
                    .await;
                }
                let what = format!(
                    "{name} ({partitions} partitions){}",
                    if ok { "" } else { ": no acknowledgement" }
                );
                event(&rec, "topic-created", &what, "", "churn");
                order.push(name);
            } else {
                let name = order.remove(0);
                let ok = matches!(
                    client.delete_topics(&[name.as_str()]).await.as_deref(),
                    Ok([(_, Ok(()))])
                );
                ledger.lock().unwrap().deleted(&name, ok);
                free.push(name.clone());
                let what = format!("{name}{}", if ok { "" } else { ": no acknowledgement" });
                event(&rec, "topic-deleted", &what, "", "churn");
            }
        }
    }

    /// One record to each partition of a new incarnation (acks=all, retried), each
    /// recorded in the ledger with whether it was acknowledged.
    async fn write_each_partition(
        producer: &mut Option<Producer>,
        bootstrap: &str,
        name: &str,
        generation: u64,
        partitions: i32,
        ledger: &Mutex<Ledger>,
    ) {
        if producer.is_none() {
            let config = ProducerConfig {
                acks: Acks::All,
                idempotence: false,
                retries: 3,
                retry_backoff: Duration::from_millis(100),
                ..Default::default()
            };
            let client = Client::new(bootstrap, "churn-producer", CLIENT_TIMEOUT);
            *producer = Producer::new(client, config).await.ok();
        }
        let Some(p) = producer.as_mut() else {
            return;
        };
        // A name seen before is another topic now: its cached metadata is stale.
        p.client().forget_topic(name);
        let mut sent = Vec::new();
        for partition in 0..partitions {
            let value = churn_value(name, generation, partition);
            let record = NewRecord {
                timestamp: 0,
                key: None,
                value: Some(Bytes::from(value.clone())),
                headers: Vec::new(),
            };
            if p.send(name, Some(partition), record).await.is_ok() {
                sent.push((partition, value));
            }
        }
        let results = p.flush().await.unwrap_or_default();
        let mut ledger = ledger.lock().unwrap();
        for (partition, value) in sent {
            let acknowledged = results
                .iter()
                .any(|r| r.topic == name && r.partition == partition && r.error.is_none());
            ledger.wrote(value, acknowledged);
        }
    }

    /// Read every partition of every topic that must exist back from offset 0, within
    /// `bound`: what the records break (see `Ledger::judge_read`).
    pub(crate) async fn check_final_records(
        ledger: &Ledger,
        bootstrap: &str,
        start: Instant,
        bound: Duration,
    ) -> Vec<InvariantViolation> {
        let deadline = Instant::now() + bound;
        let mut out = Vec::new();
        for (name, partitions, generation) in ledger.existing() {
            for partition in 0..partitions {
                let values = read_all(bootstrap, &name, partition, deadline).await;
                let now_ns = Instant::now().duration_since(start).as_nanos() as u64;
                match values {
                    Some(values) => {
                        out.extend(ledger.judge_read(&name, generation, partition, &values, now_ns))
                    }
                    None => out.push(breach(
                        now_ns,
                        format!(
                            "{name}/{partition} could not be read back within {bound:?} of healing"
                        ),
                    )),
                }
            }
        }
        out
    }

    /// Every value of a partition from offset 0 to its end; None if the deadline passes.
    async fn read_all(
        bootstrap: &str,
        topic: &str,
        partition: i32,
        deadline: Instant,
    ) -> Option<Vec<String>> {
        let mut client = Client::new(bootstrap, "churn-reader", CLIENT_TIMEOUT);
        let end = loop {
            match client.list_offset(topic, partition, -1).await {
                Ok(end) => break end,
                Err(_) if Instant::now() < deadline => {
                    client.forget_topic(topic);
                    sleep(Duration::from_millis(100)).await;
                }
                Err(_) => return None,
            }
        };
        let config = ConsumerConfig {
            fetch_wait_max: Duration::from_millis(100),
            ..Default::default()
        };
        let mut consumer = Consumer::new(client, config);
        consumer.assign(topic, partition, Some(0));
        let mut values = Vec::new();
        while consumer.position(topic, partition).unwrap_or(0) < end {
            if Instant::now() >= deadline {
                return None;
            }
            match consumer.poll().await {
                Ok(records) => values.extend(records.into_iter().map(|r| {
                    String::from_utf8_lossy(r.record.value.as_deref().unwrap_or_default())
                        .into_owned()
                })),
                Err(_) => sleep(Duration::from_millis(100)).await,
            }
        }
        Some(values)
    }

    /// After healing: each broker's metadata must come to agree with the ledger within
    /// `bound` (brokers learn metadata asynchronously). What still disagrees then.
    pub(crate) async fn check_final_metadata(
        ledger: &Ledger,
        brokers: &BTreeMap<i32, String>,
        start: Instant,
        bound: Duration,
    ) -> Vec<InvariantViolation> {
        let deadline = Instant::now() + bound;
        let mut violations = Vec::new();
        for (id, address) in brokers {
            loop {
                let mut client = Client::new(address, "churn-check", CLIENT_TIMEOUT);
                let now_ns = Instant::now().duration_since(start).as_nanos() as u64;
                let broker = format!("broker-{id}");
                let found = match client.refresh_metadata(None, false).await {
                    Ok(topics) => {
                        let churn: BTreeMap<String, i32> = topics
                            .iter()
                            .filter(|t| t.name.starts_with("churn-"))
                            .map(|t| (t.name.clone(), t.partitions.len() as i32))
                            .collect();
                        ledger.judge(&broker, &churn, now_ns)
                    }
                    Err(e) => vec![breach(
                        now_ns,
                        format!("{broker} did not answer Metadata after healing: {e}"),
                    )],
                };
                if found.is_empty() || Instant::now() >= deadline {
                    violations.extend(found);
                    break;
                }
                sleep(Duration::from_millis(250)).await;
            }
        }
        violations
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(topics: &[(&str, i32)]) -> BTreeMap<String, i32> {
        topics.iter().map(|(n, p)| (n.to_string(), *p)).collect()
    }

    #[test]
    fn acknowledged_creations_and_deletions_must_show() {
        let mut l = Ledger::default();
        l.created("churn-0", 3, true);
        l.created("churn-1", 2, true);
        l.deleted("churn-1", true);
        l.created("churn-2", 2, false);
        // What the controller acknowledged, exactly: nothing to report.
        assert!(l.judge("broker-1", &seen(&[("churn-0", 3)]), 0).is_empty());
        // An unacknowledged creation may or may not have happened.
        assert!(l
            .judge("broker-1", &seen(&[("churn-0", 3), ("churn-2", 2)]), 0)
            .is_empty());
        // A lost creation, a wrong partition count, a deleted topic back.
        let lost = l.judge("broker-1", &seen(&[]), 5);
        assert_eq!(lost.len(), 1);
        assert!(lost[0].message.contains("churn-0") && lost[0].message.contains("no such topic"));
        assert_eq!(lost[0].time_ns, 5);
        let wrong = l.judge("broker-2", &seen(&[("churn-0", 1)]), 0);
        assert!(wrong[0].message.contains("says 1"), "{wrong:?}");
        let back = l.judge("broker-3", &seen(&[("churn-0", 3), ("churn-1", 2)]), 0);
        assert_eq!(back.len(), 1);
        assert!(back[0].message.contains("deletion was acknowledged"));
    }

    #[test]
    fn deleted_data_must_not_come_back_and_acknowledged_records_must_stay() {
        let mut l = Ledger::default();
        let g1 = l.created("churn-0", 1, true);
        l.wrote(churn_value("churn-0", g1, 0), true);
        l.deleted("churn-0", true);
        let g2 = l.created("churn-0", 1, true);
        l.wrote(churn_value("churn-0", g2, 0), true);
        let own = churn_value("churn-0", g2, 0);
        let old = churn_value("churn-0", g1, 0);
        assert_eq!(l.existing(), vec![("churn-0".to_string(), 1, g2)]);
        assert!(l
            .judge_read("churn-0", g2, 0, std::slice::from_ref(&own), 0)
            .is_empty());
        let back = l.judge_read("churn-0", g2, 0, &[old.clone(), own.clone()], 0);
        assert_eq!(back.len(), 1);
        assert!(
            back[0].message.contains("deleted data came back"),
            "{back:?}"
        );
        let lost = l.judge_read("churn-0", g2, 0, &[], 0);
        assert!(lost[0].message.contains("missing"), "{lost:?}");
        // An unacknowledged write of the old incarnation may land late in the new one.
        let mut m = Ledger::default();
        let h1 = m.created("churn-1", 1, true);
        m.wrote(churn_value("churn-1", h1, 0), false);
        m.deleted("churn-1", true);
        let h2 = m.created("churn-1", 1, true);
        let late = [churn_value("churn-1", h1, 0)];
        assert!(m.judge_read("churn-1", h2, 0, &late, 0).is_empty());
    }

    #[test]
    fn an_operation_without_an_answer_leaves_the_name_uncertain_for_good() {
        // A deletion that got no answer may land after a later, acknowledged creation
        // (found by the lab: controller-churn seed 41, a forwarded request retried late).
        let mut l = Ledger::default();
        l.created("churn-1", 1, true);
        l.deleted("churn-1", false);
        l.created("churn-1", 2, true);
        assert_eq!(l.fate("churn-1"), Some(Fate::Unknown));
        assert!(l.judge("b", &seen(&[("churn-1", 1)]), 0).is_empty());
        assert!(l.existing().is_empty());
        // Other names are still judged.
        l.created("churn-2", 2, true);
        assert_eq!(l.judge("b", &seen(&[]), 0).len(), 1);
    }

    #[test]
    fn a_name_reused_takes_its_latest_fate() {
        let mut l = Ledger::default();
        l.created("churn-0", 3, true);
        l.deleted("churn-0", true);
        l.created("churn-0", 2, true);
        assert_eq!(
            l.fate("churn-0"),
            Some(Fate::Exists {
                partitions: 2,
                generation: 2
            })
        );
        assert!(l.judge("b", &seen(&[("churn-0", 2)]), 0).is_empty());
        assert_eq!(
            l.judge("b", &seen(&[("churn-0", 3)]), 0).len(),
            1,
            "the old topic's count"
        );
        l.deleted("churn-0", false);
        assert_eq!(l.fate("churn-0"), Some(Fate::Unknown));
        assert!(l.judge("b", &seen(&[]), 0).is_empty());
    }
}
