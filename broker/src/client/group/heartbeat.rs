//! The heartbeat task: keeps the member's session alive on its own connection to the
//! coordinator while the application processes records, and leaves the group when the
//! application has not polled within `max.poll.interval.ms` (as Java's heartbeat thread).
//! It reports what the coordinator said through `Shared`; `poll` acts on it.

use super::wire::{self, Reaction};
use crate::client::{ClientError, Connection};
use kafka_protocol::messages::*;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// State shared between the consumer and its heartbeat task.
pub(super) struct Shared {
    /// The coordinator's address, None while unknown.
    pub coordinator: Option<String>,
    pub member_id: String,
    pub generation: i32,
    /// Heartbeat only while true: a generation is complete and not given up.
    pub active: bool,
    pub last_poll: Instant,
    /// What the coordinator asked for since `poll` last looked.
    pub reaction: Option<Reaction>,
    /// The task left the group because `poll` was not called in time.
    pub poll_expired: bool,
    pub fatal: Option<ClientError>,
    pub closed: bool,
}

impl Shared {
    pub fn new() -> Shared {
        Shared {
            coordinator: None,
            member_id: String::new(),
            generation: -1,
            active: false,
            last_poll: Instant::now(),
            reaction: None,
            poll_expired: false,
            fatal: None,
            closed: false,
        }
    }

    /// Record a reaction, keeping the strongest one not yet taken.
    pub fn report(&mut self, reaction: Reaction) {
        let rank = |r: &Reaction| match r {
            Reaction::None | Reaction::Retry => 0,
            Reaction::Rediscover => 1,
            Reaction::Rejoin => 2,
            Reaction::Lost {
                reset_member: false,
            } => 3,
            Reaction::Lost { reset_member: true } => 4,
            Reaction::Fatal => 5,
        };
        if rank(&reaction) > self.reaction.as_ref().map_or(0, rank) {
            self.reaction = Some(reaction);
        }
    }
}

/// What the task needs to know that never changes.
pub(super) struct Settings {
    pub group_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub timeout: Duration,
    pub heartbeat_interval: Duration,
    pub max_poll_interval: Duration,
}

pub(super) fn lock(shared: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// The task's loop; ends when the consumer closes.
pub(super) async fn run(shared: Arc<Mutex<Shared>>, settings: Settings) {
    let tick = settings
        .heartbeat_interval
        .min(settings.max_poll_interval / 4)
        .max(Duration::from_millis(10));
    let mut conn: Option<Connection> = None;
    let mut last_beat: Option<Instant> = None;
    loop {
        tokio::time::sleep(tick).await;
        let (addr, member_id, generation, expired) = {
            let state = lock(&shared);
            if state.closed {
                return;
            }
            if !state.active {
                last_beat = None;
                continue;
            }
            let expired = state.last_poll.elapsed() > settings.max_poll_interval;
            (
                state.coordinator.clone(),
                state.member_id.clone(),
                state.generation,
                expired,
            )
        };
        let Some(addr) = addr else { continue };
        if expired {
            poll_expired(&shared, &settings, &mut conn, &addr, &member_id).await;
            continue;
        }
        if last_beat.is_some_and(|t| t.elapsed() < settings.heartbeat_interval) {
            continue;
        }
        last_beat = Some(Instant::now());
        let req = HeartbeatRequest::default()
            .with_group_id(GroupId(wire::s(&settings.group_id)))
            .with_generation_id(generation)
            .with_member_id(wire::s(&member_id))
            .with_group_instance_id(settings.group_instance_id.as_deref().map(wire::s));
        let (reaction, code) = match send(&mut conn, &addr, &settings, &req).await {
            Ok(resp) => (wire::reaction(resp.error_code), resp.error_code),
            Err(_) => (Reaction::Rediscover, 0),
        };
        let mut state = lock(&shared);
        let same = state.member_id == member_id && state.generation == generation;
        if same && state.active && reaction != Reaction::None {
            if matches!(reaction, Reaction::Lost { .. } | Reaction::Fatal) {
                state.active = false;
            }
            if reaction == Reaction::Fatal {
                state.fatal = Some(ClientError::kafka(code, "heartbeat"));
            }
            state.report(reaction);
        }
    }
}

/// `max.poll.interval.ms` passed without a poll: stop heartbeating and leave the group
/// (a static member does not send LeaveGroup; its session expires, as in Kafka).
async fn poll_expired(
    shared: &Mutex<Shared>,
    settings: &Settings,
    conn: &mut Option<Connection>,
    addr: &str,
    member_id: &str,
) {
    {
        let mut state = lock(shared);
        state.active = false;
        state.poll_expired = true;
    }
    tracing::warn!(
        group = settings.group_id,
        member_id,
        "poll not called within max.poll.interval.ms: leaving the group"
    );
    if settings.group_instance_id.is_some() {
        return;
    }
    let version = match connected(conn, addr, settings).await {
        Ok(c) => c.version(ApiKey::LeaveGroup).unwrap_or(0),
        Err(_) => return,
    };
    let req = wire::leave_request(version, &settings.group_id, member_id, None);
    let _ = send(conn, addr, settings, &req).await;
}

async fn connected<'a>(
    conn: &'a mut Option<Connection>,
    addr: &str,
    settings: &Settings,
) -> Result<&'a mut Connection, ClientError> {
    if conn
        .as_ref()
        .is_some_and(|c| c.is_broken() || c.addr != addr)
    {
        *conn = None;
    }
    if conn.is_none() {
        *conn = Some(Connection::connect(addr, &settings.client_id, settings.timeout).await?);
    }
    Ok(conn.as_mut().expect("set above"))
}

async fn send<R: kafka_protocol::protocol::Request>(
    conn: &mut Option<Connection>,
    addr: &str,
    settings: &Settings,
    req: &R,
) -> Result<R::Response, ClientError> {
    let result = connected(conn, addr, settings).await?.request(req).await;
    if result.is_err() {
        *conn = None;
    }
    result
}
