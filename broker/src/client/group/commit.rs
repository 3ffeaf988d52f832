//! Offset commits: synchronous (retried until `default.api.timeout.ms`), asynchronous
//! (written at once on the coordinator connection, answered in a later poll) and
//! automatic (asynchronous, every `auto.commit.interval.ms` inside poll). Every commit
//! is reported as a CommitStarted event and, later, a CommitFinished one.

use super::assignor::TopicPartition;
use super::wire::{self, s, Reaction};
use super::{CommitResult, GroupConsumer, GroupEvent, PendingCommit};
use crate::client::ClientError;
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

impl GroupConsumer {
    /// Commit `offsets` (each the next record to consume, Kafka's meaning) with the
    /// current generation and member id, retrying retriable errors until
    /// `default.api.timeout.ms`. ILLEGAL_GENERATION and UNKNOWN_MEMBER_ID also mean the
    /// partitions are lost (a Lost event; the next poll rejoins).
    pub async fn commit_sync(
        &mut self,
        offsets: BTreeMap<TopicPartition, i64>,
    ) -> Result<(), ClientError> {
        let id = self.start_commit(&offsets);
        let result = self.commit_sync_inner(&offsets).await;
        self.emit(GroupEvent::CommitFinished {
            id,
            result: result.clone(),
        });
        match result {
            CommitResult::Ok => Ok(()),
            CommitResult::Failed { code, message } => Err(ClientError::kafka(code, message)),
            CommitResult::Unknown { message } => Err(ClientError::Timeout(message)),
            CommitResult::NotSent { message } => Err(ClientError::Io(message)),
        }
    }

    /// Send a commit of `offsets` without waiting; returns its id. Its CommitFinished
    /// event comes with a later poll (or `close`). Not retried, as in Java.
    pub async fn commit_async(&mut self, offsets: BTreeMap<TopicPartition, i64>) -> u64 {
        let id = self.start_commit(&offsets);
        let finished = |result| GroupEvent::CommitFinished { id, result };
        if self.generation < 0 {
            let message = "not a member of a generation".to_string();
            self.events
                .push(finished(CommitResult::NotSent { message }));
            return id;
        }
        let req = self.commit_request(&offsets);
        let conn = match self.coordinator().await {
            Ok(conn) => conn,
            Err(e) => {
                let message = e.to_string();
                self.events
                    .push(finished(CommitResult::NotSent { message }));
                return id;
            }
        };
        match conn.write_request(&req).await {
            Ok(()) => self.pending_commits.push_back(PendingCommit { id }),
            Err(e) => {
                self.coordinator_dead();
                let message = e.to_string();
                self.events
                    .push(finished(CommitResult::Unknown { message }));
            }
        }
        id
    }

    /// Read the answers of the async commits in flight.
    pub(super) async fn drain_async_commits(&mut self) {
        let mut rediscover = false;
        while let Some(pending) = self.pending_commits.pop_front() {
            let Some(conn) = self.coordinator.as_mut() else {
                self.pending_commits.push_front(pending);
                break;
            };
            let result = match conn.read_response::<OffsetCommitRequest>().await {
                Ok(resp) => {
                    let (code, message) = first_error(&resp);
                    match wire::reaction(code) {
                        Reaction::None => CommitResult::Ok,
                        reaction => {
                            if reaction == Reaction::Rediscover {
                                rediscover = true;
                            } else {
                                self.commit_error_effects(code, &reaction);
                            }
                            CommitResult::Failed { code, message }
                        }
                    }
                }
                Err(e) => {
                    self.pending_commits.push_front(pending);
                    tracing::debug!(error = %e, "async commit answer lost");
                    self.coordinator_dead();
                    return;
                }
            };
            self.emit(GroupEvent::CommitFinished {
                id: pending.id,
                result,
            });
        }
        if rediscover {
            self.coordinator_dead();
        }
    }

    /// Auto-commit: every `auto.commit.interval.ms`, an async commit of the positions.
    pub(super) async fn maybe_auto_commit(&mut self) {
        if !self.config.enable_auto_commit || Instant::now() < self.next_auto_commit {
            return;
        }
        self.next_auto_commit =
            Instant::now() + Duration::from_millis(self.config.auto_commit_interval_ms);
        if self.generation >= 0 && !self.need_join && !self.positions.is_empty() {
            self.commit_async(self.positions.clone()).await;
        }
    }

    fn start_commit(&mut self, offsets: &BTreeMap<TopicPartition, i64>) -> u64 {
        let id = self.next_commit_id;
        self.next_commit_id += 1;
        self.emit(GroupEvent::CommitStarted {
            id,
            generation: self.generation,
            member_id: self.member_id.clone(),
            offsets: offsets.iter().map(|(tp, o)| (tp.clone(), *o)).collect(),
        });
        id
    }

    fn commit_request(&self, offsets: &BTreeMap<TopicPartition, i64>) -> OffsetCommitRequest {
        let mut topics: BTreeMap<&str, Vec<offset_commit_request::OffsetCommitRequestPartition>> =
            BTreeMap::new();
        for ((topic, partition), offset) in offsets {
            topics.entry(topic.as_str()).or_default().push(
                offset_commit_request::OffsetCommitRequestPartition::default()
                    .with_partition_index(*partition)
                    .with_committed_offset(*offset)
                    .with_committed_leader_epoch(-1)
                    .with_committed_metadata(Some(s(""))),
            );
        }
        OffsetCommitRequest::default()
            .with_group_id(GroupId(s(&self.config.group_id)))
            .with_generation_id_or_member_epoch(self.generation)
            .with_member_id(s(&self.member_id))
            .with_group_instance_id(self.config.group_instance_id.as_deref().map(s))
            .with_retention_time_ms(-1)
            .with_topics(
                topics
                    .into_iter()
                    .map(|(t, ps)| {
                        offset_commit_request::OffsetCommitRequestTopic::default()
                            .with_name(TopicName(s(t)))
                            .with_partitions(ps)
                    })
                    .collect(),
            )
    }

    async fn commit_sync_inner(&mut self, offsets: &BTreeMap<TopicPartition, i64>) -> CommitResult {
        if self.generation < 0 {
            let message = "not a member of a generation".to_string();
            return CommitResult::NotSent { message };
        }
        let deadline = Instant::now() + Duration::from_millis(self.config.default_api_timeout_ms);
        let mut unknown: Option<String> = None;
        let generation = self.generation;
        loop {
            // A retry never goes out under another generation: an async commit drained on
            // the way may have lost this one (Java fails such a commit locally).
            if self.generation != generation {
                let message =
                    format!("generation {generation} was lost while the commit was retried");
                return match unknown {
                    Some(_) => CommitResult::Unknown { message },
                    None => CommitResult::NotSent { message },
                };
            }
            let req = self.commit_request(offsets);
            let last = match self.coordinator().await {
                Err(e) => CommitResult::NotSent {
                    message: e.to_string(),
                },
                Ok(_) => match self.coordinator_request(&req, None).await {
                    Err(e) => {
                        unknown = Some(e.to_string());
                        CommitResult::Unknown {
                            message: e.to_string(),
                        }
                    }
                    Ok(resp) => {
                        let (code, message) = first_error(&resp);
                        let reaction = wire::reaction(code);
                        if reaction == Reaction::None {
                            return CommitResult::Ok;
                        }
                        self.commit_error_effects(code, &reaction);
                        let failed = CommitResult::Failed { code, message };
                        if matches!(reaction, Reaction::Retry | Reaction::Rediscover) {
                            failed
                        } else {
                            return failed;
                        }
                    }
                },
            };
            if Instant::now() >= deadline {
                return match (last, unknown) {
                    (CommitResult::NotSent { .. }, Some(message)) => {
                        CommitResult::Unknown { message }
                    }
                    (last, _) => last,
                };
            }
            tokio::time::sleep(self.backoff()).await;
        }
    }

    /// What a failed commit means for the membership.
    fn commit_error_effects(&mut self, code: i16, reaction: &Reaction) {
        match reaction {
            Reaction::Rejoin => self.need_join = true,
            Reaction::Lost { reset_member } => self.lose_partitions(*reset_member),
            Reaction::Rediscover => self.coordinator_dead(),
            Reaction::Fatal if code == ResponseError::FencedInstanceId.code() => {
                self.fatal = Some(ClientError::kafka(code, "OffsetCommit"));
            }
            _ => {}
        }
    }
}

/// The first partition error of a commit answer, with the partition it concerns.
fn first_error(resp: &OffsetCommitResponse) -> (i16, String) {
    for t in &resp.topics {
        for p in &t.partitions {
            if p.error_code != 0 {
                return (
                    p.error_code,
                    format!("OffsetCommit {}-{}", t.name.as_str(), p.partition_index),
                );
            }
        }
    }
    (0, String::new())
}
