//! Which Kafka APIs and versions this broker serves, and the framing of requests.
//!
//! The ranges are chosen so that every client we test against (kcat/librdkafka,
//! confluent-kafka, kafka-python, aiokafka, kafkajs) finds a common version; see
//! `shared/notes/kafka-protocol.md`. Each range is also clipped to what the
//! `kafka-protocol` crate can decode.

use kafka_protocol::messages::ApiKey;

/// (API, lowest version, highest version) advertised in ApiVersions.
pub const SUPPORTED_APIS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 9),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
];

/// The advertised range of `key`, if it is served at all.
pub fn supported_range(key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED_APIS
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, min, max)| (*min, *max))
}

/// The fixed start of every request header: api key, api version, correlation id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestPrefix {
    pub api_key: i16,
    pub api_version: i16,
    pub correlation_id: i32,
}

impl RequestPrefix {
    pub fn parse(frame: &[u8]) -> Option<RequestPrefix> {
        if frame.len() < 8 {
            return None;
        }
        Some(RequestPrefix {
            api_key: i16::from_be_bytes([frame[0], frame[1]]),
            api_version: i16::from_be_bytes([frame[2], frame[3]]),
            correlation_id: i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertised_ranges_are_decodable_by_the_codec() {
        for (key, min, max) in SUPPORTED_APIS {
            let valid = key.valid_versions();
            assert!(
                valid.min <= *min && *max <= valid.max,
                "{key:?} {min}..{max} vs {valid}"
            );
        }
    }
}
