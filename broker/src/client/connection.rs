//! One connection to one broker: framing, correlation ids, version negotiation.
//!
//! Requests can be pipelined: `write_request` queues a request on the wire and
//! `read_response` takes the responses back in order, which is how the producer keeps
//! several batches in flight.

use super::ClientError;
use crate::wire::{read_frame, write_frame};
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use kafka_protocol::ResponseError;
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;
use tokio::io::BufReader;
use tokio::net::TcpStream;

/// Largest response this client accepts; a bound so a corrupt size prefix cannot make
/// the client allocate without limit.
const RESPONSE_BYTES_MAX: usize = 256 * 1024 * 1024;

/// Highest version of each API this client speaks.
const CLIENT_MAX_VERSIONS: &[(ApiKey, i16)] = &[
    (ApiKey::Produce, 9),
    (ApiKey::Fetch, 12),
    (ApiKey::ListOffsets, 7),
    (ApiKey::Metadata, 12),
    (ApiKey::ApiVersions, 3),
    (ApiKey::CreateTopics, 7),
    (ApiKey::DeleteTopics, 6),
    (ApiKey::InitProducerId, 4),
    (ApiKey::OffsetForLeaderEpoch, 4),
    // The group consumer: FindCoordinator below v4 (one key) and OffsetFetch below v8
    // (one group), shapes every Kafka broker still serves.
    (ApiKey::FindCoordinator, 3),
    (ApiKey::JoinGroup, 7),
    (ApiKey::SyncGroup, 5),
    (ApiKey::Heartbeat, 4),
    (ApiKey::LeaveGroup, 5),
    // OffsetCommit v9 (KIP-848): the generation field carries a consumer-protocol member's
    // epoch, which Kafka checks only from v9; a classic member's commit means the same.
    (ApiKey::OffsetCommit, 9),
    (ApiKey::OffsetFetch, 7),
];

pub struct Connection {
    stream: BufReader<TcpStream>,
    client_id: String,
    next_correlation_id: i32,
    /// (correlation id, api key, version) of requests written but not yet answered.
    in_flight: VecDeque<(i32, ApiKey, i16)>,
    /// The version to use per API: min(ours, the broker's), or absent if none overlap.
    versions: BTreeMap<i16, i16>,
    timeout: Duration,
    pub addr: String,
    /// Set by a failed read or write: where the stream stands is unknown (a late answer to a
    /// timed-out request would be taken for the next request's), so it is never used again.
    broken: bool,
}

impl Connection {
    /// Connect and negotiate versions with ApiVersions.
    pub async fn connect(
        addr: &str,
        client_id: &str,
        timeout: Duration,
    ) -> Result<Connection, ClientError> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ClientError::Timeout(format!("connecting to {addr}")))?
            .map_err(|e| ClientError::Io(format!("connecting to {addr}: {e}")))?;
        let _ = stream.set_nodelay(true);
        let mut conn = Connection {
            stream: BufReader::with_capacity(256 * 1024, stream),
            client_id: client_id.to_string(),
            next_correlation_id: 0,
            in_flight: VecDeque::new(),
            versions: BTreeMap::new(),
            timeout,
            addr: addr.to_string(),
            broken: false,
        };
        conn.versions.insert(ApiKey::ApiVersions as i16, 3);
        let req = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("faultline"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let resp: ApiVersionsResponse = conn.request(&req).await?;
        if resp.error_code != 0 {
            return Err(ClientError::Kafka {
                error: ResponseError::try_from_code(resp.error_code)
                    .unwrap_or(ResponseError::Unknown(resp.error_code)),
                message: "ApiVersions refused".into(),
            });
        }
        for (key, ours) in CLIENT_MAX_VERSIONS {
            if let Some(theirs) = resp.api_keys.iter().find(|k| k.api_key == *key as i16) {
                let version = (*ours).min(theirs.max_version);
                if version >= theirs.min_version {
                    conn.versions.insert(*key as i16, version);
                }
            }
        }
        Ok(conn)
    }

    /// The version that will be used for `key`, if the broker serves it.
    pub fn version(&self, key: ApiKey) -> Option<i16> {
        self.versions.get(&(key as i16)).copied()
    }

    /// Use `version` of `key` from now on (a request shape that only older versions have;
    /// the broker refuses a version it does not serve).
    pub fn pin_version(&mut self, key: ApiKey, version: i16) {
        self.versions.insert(key as i16, version);
    }

    /// Send one request and wait for its response.
    pub async fn request<R: Request>(&mut self, req: &R) -> Result<R::Response, ClientError> {
        self.write_request(req).await?;
        self.read_response::<R>().await
    }

    /// Whether an earlier failure left the stream unusable; drop the connection then.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Write a request without waiting. Pair every call with one `read_response`, unless
    /// `expect_response` is false (a produce with acks=0).
    pub async fn write_request<R: Request>(&mut self, req: &R) -> Result<(), ClientError> {
        self.write_request_inner(req, true).await
    }

    pub async fn write_request_no_response<R: Request>(
        &mut self,
        req: &R,
    ) -> Result<(), ClientError> {
        self.write_request_inner(req, false).await
    }

    async fn write_request_inner<R: Request>(
        &mut self,
        req: &R,
        expect_response: bool,
    ) -> Result<(), ClientError> {
        if self.broken {
            return Err(ClientError::Io(format!(
                "the connection to {} failed earlier",
                self.addr
            )));
        }
        let key = ApiKey::try_from(R::KEY).expect("request types have known keys");
        let version = self.version(key).ok_or_else(|| {
            ClientError::Protocol(format!(
                "broker {} serves no common version of {key:?}",
                self.addr
            ))
        })?;
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_string(self.client_id.clone())));
        let mut buf = BytesMut::with_capacity(req.compute_size(version).unwrap_or(64) + 64);
        header
            .encode(&mut buf, key.request_header_version(version))
            .and_then(|_| req.encode(&mut buf, version))
            .map_err(|e| ClientError::Protocol(format!("encoding {key:?}: {e}")))?;
        let written = tokio::time::timeout(self.timeout, write_frame(&mut self.stream, &buf))
            .await
            .map_err(|_| ClientError::Timeout(format!("writing to {}", self.addr)))
            .and_then(|r| r.map_err(|e| ClientError::Io(format!("writing to {}: {e}", self.addr))));
        if let Err(e) = written {
            self.broken = true;
            return Err(e);
        }
        if expect_response {
            self.in_flight.push_back((correlation_id, key, version));
        }
        Ok(())
    }

    /// Read the response to the oldest request in flight, which must be of type `R`. Any
    /// failure breaks the connection.
    pub async fn read_response<R: Request>(&mut self) -> Result<R::Response, ClientError> {
        let result = self.read_response_inner::<R>().await;
        if result.is_err() {
            self.broken = true;
        }
        result
    }

    async fn read_response_inner<R: Request>(&mut self) -> Result<R::Response, ClientError> {
        let (correlation_id, key, version) = self
            .in_flight
            .pop_front()
            .ok_or_else(|| ClientError::Protocol("no request in flight".into()))?;
        assert_eq!(
            key as i16,
            R::KEY,
            "responses are read in the order requests were written"
        );
        let frame = tokio::time::timeout(
            self.timeout,
            read_frame(&mut self.stream, RESPONSE_BYTES_MAX),
        )
        .await
        .map_err(|_| ClientError::Timeout(format!("waiting for {key:?} from {}", self.addr)))?
        .map_err(|e| ClientError::Io(format!("reading from {}: {e}", self.addr)))?
        .ok_or_else(|| ClientError::Io(format!("{} closed the connection", self.addr)))?;
        let mut buf = Bytes::from(frame);
        let header_version = if key == ApiKey::ApiVersions {
            0
        } else {
            key.response_header_version(version)
        };
        let header = ResponseHeader::decode(&mut buf, header_version)
            .map_err(|e| ClientError::Protocol(format!("bad {key:?} response header: {e}")))?;
        if header.correlation_id != correlation_id {
            return Err(ClientError::Protocol(format!(
                "correlation id {} does not match the request's {correlation_id}",
                header.correlation_id
            )));
        }
        R::Response::decode(&mut buf, version)
            .map_err(|e| ClientError::Protocol(format!("bad {key:?} v{version} response: {e}")))
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Wait at most this long for any one read or write.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }
}
