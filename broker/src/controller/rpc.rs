//! The controller quorum's wire: length-prefixed JSON frames over TCP, between controllers
//! (Raft messages, one way) and from brokers to the active controller (request, response).
//!
//! JSON because metadata traffic is small and rare next to records, and a readable wire is
//! worth more here than bytes; frames are bounded like Kafka's, so a bogus length cannot
//! exhaust memory, and any decoding failure closes the connection.

use super::logic::{
    AlterPartitionRequest, ControllerError, HeartbeatRequest, MetadataImage, NewTopic,
    PartitionState,
};
use crate::raft::Envelope;
use serde::{Deserialize, Serialize};
use std::io;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub use faultline_core::controller::FRAME_BYTES_MAX;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Request {
    /// From another controller; no response.
    Raft(Envelope),
    Heartbeat(HeartbeatRequest),
    AlterPartition(AlterPartitionRequest),
    CreateTopics(Vec<NewTopic>),
    DeleteTopics(Vec<String>),
    /// The committed image once it is newer than `offset`, parking up to `wait_ms` (a
    /// long poll: brokers learn of changes as they commit). Answered by the active
    /// controller only.
    FetchMetadata {
        offset: u64,
        wait_ms: u64,
    },
    /// The node's view: for tools and tests.
    Describe,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Response {
    /// This node is not the active controller (or not yet ready to act as one).
    NotController {
        leader_hint: Option<i32>,
    },
    Heartbeat {
        fenced: bool,
        /// The committed image, when it is newer than the broker's `metadata_offset`.
        image: Option<MetadataImage>,
    },
    AlterPartition(Result<PartitionState, ControllerError>),
    /// None when nothing newer committed within the wait.
    Metadata(Option<MetadataImage>),
    Topics(Vec<(String, Result<(), ControllerError>)>),
    Describe {
        node: i32,
        term: u64,
        leader: Option<i32>,
        active: bool,
        image: MetadataImage,
    },
}

/// Write one frame: a 4-byte big-endian length, then the JSON value.
pub async fn write_message<W, T>(writer: &mut W, value: &T) -> io::Result<()>
where
    W: AsyncWriteExt + Unpin,
    T: Serialize,
{
    let body = serde_json::to_vec(value).map_err(io::Error::other)?;
    if body.len() > FRAME_BYTES_MAX {
        return Err(io::Error::other(format!(
            "frame of {} bytes exceeds {FRAME_BYTES_MAX}",
            body.len()
        )));
    }
    let mut frame = Vec::with_capacity(body.len() + 4);
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    writer.write_all(&frame).await?;
    writer.flush().await
}

/// Read one frame; `Ok(None)` on a clean end of stream before a frame starts.
pub async fn read_message<R, T>(reader: &mut R) -> io::Result<Option<T>>
where
    R: AsyncReadExt + Unpin,
    T: for<'de> Deserialize<'de>,
{
    let mut len = [0u8; 4];
    match reader.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > FRAME_BYTES_MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds {FRAME_BYTES_MAX}"),
        ));
    }
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).await?;
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}
