//! Encoding and decoding of the records inside a v2 batch, with compression.
//!
//! The broker itself never calls this on the produce or fetch path: batches pass through
//! as bytes. The project's client, the console tools, the lab and the tests use it, and the
//! broker uses it only where it must look inside (timestamp lookups inside a batch).

use super::batch::{self, BatchError, BatchHeader, BATCH_HEADER_BYTES, MAGIC_V2};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use std::io::{Read, Write};

/// Kafka's compression codecs, with their attribute values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    None = 0,
    Gzip = 1,
    Snappy = 2,
    Lz4 = 3,
    Zstd = 4,
}

impl Compression {
    pub fn from_attribute(value: u8) -> Result<Compression, CodecError> {
        Ok(match value {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            other => return Err(CodecError::UnknownCompression(other)),
        })
    }

    /// Parse Kafka's `compression.type` names.
    pub fn from_name(name: &str) -> Option<Compression> {
        Some(match name {
            "none" | "uncompressed" => Compression::None,
            "gzip" => Compression::Gzip,
            "snappy" => Compression::Snappy,
            "lz4" => Compression::Lz4,
            "zstd" => Compression::Zstd,
            _ => return None,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error(transparent)]
    Batch(#[from] BatchError),
    #[error("unknown compression codec {0}")]
    UnknownCompression(u8),
    #[error("decompression failed: {0}")]
    Decompress(String),
    #[error("malformed record: {0}")]
    Malformed(&'static str),
}

/// One record header. Kafka allows repeated keys, so headers are a list, not a map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub key: String,
    pub value: Option<Bytes>,
}

/// One record as a client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
}

/// What goes into a batch the client builds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchOptions {
    pub compression: Compression,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub transactional: bool,
    pub partition_leader_epoch: i32,
}

impl Default for BatchOptions {
    fn default() -> Self {
        BatchOptions {
            compression: Compression::None,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            transactional: false,
            partition_leader_epoch: -1,
        }
    }
}

/// A record to encode: timestamp, key, value, headers. Offsets are assigned in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NewRecord {
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
}

/// Encode `records` (at least one) into one v2 batch with base offset 0.
pub fn encode_batch(records: &[NewRecord], options: &BatchOptions) -> BytesMut {
    assert!(!records.is_empty(), "a batch holds at least one record");
    let base_timestamp = records[0].timestamp;
    let max_timestamp = records
        .iter()
        .map(|r| r.timestamp)
        .max()
        .unwrap_or(base_timestamp);
    let mut body = BytesMut::with_capacity(records.len() * 32);
    for (delta, record) in records.iter().enumerate() {
        encode_record(
            &mut body,
            record,
            delta as i64,
            record.timestamp - base_timestamp,
        );
    }
    let body = compress(options.compression, &body);

    let mut out = BytesMut::with_capacity(BATCH_HEADER_BYTES + body.len());
    out.put_i64(0);
    out.put_i32((BATCH_HEADER_BYTES - 12 + body.len()) as i32);
    out.put_i32(options.partition_leader_epoch);
    out.put_i8(MAGIC_V2);
    out.put_u32(0); // CRC, filled below
    let mut attributes = options.compression as i16;
    if options.transactional {
        attributes |= batch::ATTR_TRANSACTIONAL;
    }
    out.put_i16(attributes);
    out.put_i32(records.len() as i32 - 1);
    out.put_i64(base_timestamp);
    out.put_i64(max_timestamp);
    out.put_i64(options.producer_id);
    out.put_i16(options.producer_epoch);
    out.put_i32(options.base_sequence);
    out.put_i32(records.len() as i32);
    out.put_slice(&body);
    let crc = batch::compute_crc(&out);
    (&mut out[17..21]).put_u32(crc);
    out
}

fn encode_record(out: &mut BytesMut, record: &NewRecord, offset_delta: i64, timestamp_delta: i64) {
    let mut inner = BytesMut::with_capacity(32);
    inner.put_i8(0); // record attributes, unused
    put_varlong(&mut inner, timestamp_delta);
    put_varlong(&mut inner, offset_delta);
    put_nullable_bytes(&mut inner, record.key.as_deref());
    put_nullable_bytes(&mut inner, record.value.as_deref());
    put_varlong(&mut inner, record.headers.len() as i64);
    for header in &record.headers {
        put_nullable_bytes(&mut inner, Some(header.key.as_bytes()));
        put_nullable_bytes(&mut inner, header.value.as_deref());
    }
    put_varlong(out, inner.len() as i64);
    out.put_slice(&inner);
}

/// Decode every record of one whole batch, decompressing if needed. Control batches
/// (transaction markers) yield no records.
pub fn decode_batch(batch_bytes: &[u8]) -> Result<(BatchHeader, Vec<Record>), CodecError> {
    let header = batch::validate(batch_bytes)?;
    if header.is_control() {
        return Ok((header, Vec::new()));
    }
    let compression = Compression::from_attribute(header.compression())?;
    let body = decompress(compression, &batch_bytes[BATCH_HEADER_BYTES..])?;
    let mut buf = &body[..];
    // records_count is untrusted: every record takes at least one byte of the body, so
    // this bounds the allocation by what was actually received.
    let mut records = Vec::with_capacity((header.records_count.max(0) as usize).min(body.len()));
    for _ in 0..header.records_count {
        let len = get_varlong(&mut buf)?;
        if len < 0 || len as usize > buf.remaining() {
            return Err(CodecError::Malformed("record length"));
        }
        let mut rec = &buf[..len as usize];
        buf.advance(len as usize);
        if !rec.has_remaining() {
            return Err(CodecError::Malformed("empty record"));
        }
        rec.advance(1);
        let timestamp_delta = get_varlong(&mut rec)?;
        let offset_delta = get_varlong(&mut rec)?;
        let key = get_nullable_bytes(&mut rec)?;
        let value = get_nullable_bytes(&mut rec)?;
        let header_count = get_varlong(&mut rec)?;
        if header_count < 0 || header_count as usize > rec.remaining() {
            return Err(CodecError::Malformed("header count"));
        }
        let mut headers = Vec::with_capacity(header_count as usize);
        for _ in 0..header_count {
            let key =
                get_nullable_bytes(&mut rec)?.ok_or(CodecError::Malformed("null header key"))?;
            let key = String::from_utf8(key.to_vec())
                .map_err(|_| CodecError::Malformed("header key utf-8"))?;
            let value = get_nullable_bytes(&mut rec)?;
            headers.push(Header { key, value });
        }
        let timestamp = if header.attributes & batch::ATTR_TIMESTAMP_LOG_APPEND != 0 {
            header.max_timestamp
        } else {
            header.base_timestamp + timestamp_delta
        };
        records.push(Record {
            offset: header.base_offset + offset_delta,
            timestamp,
            key,
            value,
            headers,
        });
    }
    Ok((header, records))
}

/// Decode all whole batches in `buf` (a fetch response's records). A partial batch at the
/// end, which brokers may return when cut by max_bytes, is ignored.
pub fn decode_batches(buf: &[u8]) -> Result<Vec<(BatchHeader, Vec<Record>)>, CodecError> {
    let mut out = Vec::new();
    for item in batch::split_batches(buf) {
        match item {
            Ok((_, bytes)) => out.push(decode_batch(bytes)?),
            Err(BatchError::Truncated { .. }) => break,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(out)
}

const SNAPPY_XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";
const SNAPPY_XERIAL_HEADER: &[u8; 16] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";
const SNAPPY_BLOCK_BYTES: usize = 32 * 1024;

fn compress(compression: Compression, data: &[u8]) -> Vec<u8> {
    match compression {
        Compression::None => data.to_vec(),
        Compression::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(data).expect("writing to a Vec cannot fail");
            enc.finish().expect("writing to a Vec cannot fail")
        }
        Compression::Snappy => {
            // Java clients expect xerial framing; librdkafka reads both.
            let mut out = SNAPPY_XERIAL_HEADER.to_vec();
            let mut encoder = snap::raw::Encoder::new();
            for chunk in data.chunks(SNAPPY_BLOCK_BYTES) {
                let block = encoder
                    .compress_vec(chunk)
                    .expect("snappy block within limits");
                out.extend_from_slice(&(block.len() as u32).to_be_bytes());
                out.extend_from_slice(&block);
            }
            out
        }
        Compression::Lz4 => {
            let mut enc = lz4_flex::frame::FrameEncoder::new(Vec::new());
            enc.write_all(data).expect("writing to a Vec cannot fail");
            enc.finish().expect("writing to a Vec cannot fail")
        }
        Compression::Zstd => zstd::bulk::compress(data, 3).expect("zstd compress into a Vec"),
    }
}

/// Largest decompressed batch body accepted: a bound so that a small hostile batch (a
/// "zip bomb") cannot make the reader allocate without limit. Far above anything a
/// producer sends (batches are bounded by `message.max.bytes`, 1 MiB by default).
pub const DECOMPRESSED_BYTES_MAX: usize = 256 * 1024 * 1024;

fn decompress(compression: Compression, data: &[u8]) -> Result<Vec<u8>, CodecError> {
    let err = |e: std::io::Error| CodecError::Decompress(format!("{compression:?}: {e}"));
    let too_large = || {
        CodecError::Decompress(format!(
            "{compression:?}: decompresses to more than {DECOMPRESSED_BYTES_MAX} bytes"
        ))
    };
    // Read at most one byte past the bound, so exceeding it is detected, not truncated.
    let bounded = |reader: &mut dyn Read, out: &mut Vec<u8>| -> Result<(), CodecError> {
        reader
            .take(DECOMPRESSED_BYTES_MAX as u64 + 1)
            .read_to_end(out)
            .map_err(err)?;
        if out.len() > DECOMPRESSED_BYTES_MAX {
            return Err(too_large());
        }
        Ok(())
    };
    let mut out = Vec::new();
    match compression {
        Compression::None => out.extend_from_slice(data),
        Compression::Gzip => bounded(&mut flate2::read::GzDecoder::new(data), &mut out)?,
        Compression::Snappy => {
            if data.len() >= 16 && &data[..8] == SNAPPY_XERIAL_MAGIC {
                let mut rest = &data[16..];
                let mut decoder = snap::raw::Decoder::new();
                while rest.len() >= 4 {
                    let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
                    rest = &rest[4..];
                    if len > rest.len() {
                        return Err(CodecError::Decompress("snappy block truncated".into()));
                    }
                    let claimed = snap::raw::decompress_len(&rest[..len])
                        .map_err(|e| CodecError::Decompress(e.to_string()))?;
                    if out.len() + claimed > DECOMPRESSED_BYTES_MAX {
                        return Err(too_large());
                    }
                    let block = decoder
                        .decompress_vec(&rest[..len])
                        .map_err(|e| CodecError::Decompress(e.to_string()))?;
                    out.extend_from_slice(&block);
                    rest = &rest[len..];
                }
            } else {
                let claimed = snap::raw::decompress_len(data)
                    .map_err(|e| CodecError::Decompress(e.to_string()))?;
                if claimed > DECOMPRESSED_BYTES_MAX {
                    return Err(too_large());
                }
                out = snap::raw::Decoder::new()
                    .decompress_vec(data)
                    .map_err(|e| CodecError::Decompress(e.to_string()))?;
            }
        }
        Compression::Lz4 => bounded(&mut lz4_flex::frame::FrameDecoder::new(data), &mut out)?,
        Compression::Zstd => bounded(
            &mut zstd::stream::read::Decoder::new(data).map_err(err)?,
            &mut out,
        )?,
    }
    Ok(out)
}

pub fn put_varlong(out: &mut impl BufMut, value: i64) {
    let mut v = ((value << 1) ^ (value >> 63)) as u64;
    while v >= 0x80 {
        out.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    out.put_u8(v as u8);
}

pub fn get_varlong(buf: &mut &[u8]) -> Result<i64, CodecError> {
    let mut result: u64 = 0;
    for shift in (0..70).step_by(7) {
        if !buf.has_remaining() {
            return Err(CodecError::Malformed("varint truncated"));
        }
        let byte = buf.get_u8();
        if shift == 63 && byte > 1 {
            return Err(CodecError::Malformed("varint too long"));
        }
        result |= ((byte & 0x7f) as u64) << shift;
        if byte & 0x80 == 0 {
            return Ok(((result >> 1) as i64) ^ -((result & 1) as i64));
        }
    }
    Err(CodecError::Malformed("varint too long"))
}

fn put_nullable_bytes(out: &mut BytesMut, value: Option<&[u8]>) {
    match value {
        None => put_varlong(out, -1),
        Some(v) => {
            put_varlong(out, v.len() as i64);
            out.put_slice(v);
        }
    }
}

fn get_nullable_bytes(buf: &mut &[u8]) -> Result<Option<Bytes>, CodecError> {
    let len = get_varlong(buf)?;
    if len < 0 {
        return Ok(None);
    }
    let len = len as usize;
    if len > buf.remaining() {
        return Err(CodecError::Malformed("bytes length past end of record"));
    }
    let value = Bytes::copy_from_slice(&buf[..len]);
    buf.advance(len);
    Ok(Some(value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_record() -> impl Strategy<Value = NewRecord> {
        (
            0i64..2_000_000_000_000,
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..200)),
            proptest::collection::vec(
                (
                    "[a-z]{0,6}",
                    proptest::option::of(proptest::collection::vec(any::<u8>(), 0..10)),
                ),
                0..4,
            ),
        )
            .prop_map(|(timestamp, key, value, headers)| NewRecord {
                timestamp,
                key: key.map(Bytes::from),
                value: value.map(Bytes::from),
                headers: headers
                    .into_iter()
                    .map(|(key, value)| Header {
                        key,
                        value: value.map(Bytes::from),
                    })
                    .collect(),
            })
    }

    fn arb_compression() -> impl Strategy<Value = Compression> {
        prop_oneof![
            Just(Compression::None),
            Just(Compression::Gzip),
            Just(Compression::Snappy),
            Just(Compression::Lz4),
            Just(Compression::Zstd)
        ]
    }

    proptest! {
        #[test]
        fn batches_round_trip(records in proptest::collection::vec(arb_record(), 1..20), compression in arb_compression(), base in 0i64..1_000_000) {
            let options = BatchOptions { compression, producer_id: 7, producer_epoch: 1, base_sequence: 3, ..Default::default() };
            let mut bytes = encode_batch(&records, &options);
            batch::set_base_offset(&mut bytes, base);
            let (header, decoded) = decode_batch(&bytes).unwrap();
            prop_assert_eq!(header.records_count as usize, records.len());
            prop_assert_eq!(header.producer_id, 7);
            prop_assert_eq!(header.last_offset(), base + records.len() as i64 - 1);
            for (i, (want, got)) in records.iter().zip(&decoded).enumerate() {
                prop_assert_eq!(got.offset, base + i as i64);
                prop_assert_eq!(got.timestamp, want.timestamp);
                prop_assert_eq!(&got.key, &want.key);
                prop_assert_eq!(&got.value, &want.value);
                prop_assert_eq!(&got.headers, &want.headers);
            }
        }

        #[test]
        fn any_flipped_byte_after_the_crc_is_caught(records in proptest::collection::vec(arb_record(), 1..5), pos in any::<prop::sample::Index>(), bit in 0u8..8) {
            let bytes = encode_batch(&records, &BatchOptions::default());
            let mut bad = bytes.to_vec();
            let i = 21 + pos.index(bad.len() - 21);
            bad[i] ^= 1 << bit;
            prop_assert!(batch::validate(&bad).is_err());
        }

        #[test]
        fn varlong_round_trips(v in any::<i64>()) {
            let mut buf = BytesMut::new();
            put_varlong(&mut buf, v);
            let mut slice = &buf[..];
            prop_assert_eq!(get_varlong(&mut slice).unwrap(), v);
            prop_assert!(slice.is_empty());
        }

        #[test]
        fn decoding_garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_batches(&data);
        }
    }

    #[test]
    fn a_batch_that_decompresses_beyond_the_bound_is_refused() {
        // 300 MiB of zeros compresses to a few hundred KiB: a zip bomb for a reader.
        let zeros = vec![0u8; DECOMPRESSED_BYTES_MAX + 1024];
        for compression in [
            Compression::Gzip,
            Compression::Lz4,
            Compression::Zstd,
            Compression::Snappy,
        ] {
            let packed = compress(compression, &zeros);
            assert!(
                packed.len() < zeros.len() / 20,
                "{compression:?} packed to {}",
                packed.len()
            );
            let e = decompress(compression, &packed).unwrap_err().to_string();
            assert!(
                e.contains("decompresses to more than"),
                "{compression:?}: {e}"
            );
        }
        let fine = compress(Compression::Zstd, &zeros[..1 << 20]);
        assert_eq!(decompress(Compression::Zstd, &fine).unwrap().len(), 1 << 20);
    }

    #[test]
    fn raw_snappy_without_xerial_framing_decodes() {
        let payload = b"hello hello hello".to_vec();
        let raw = snap::raw::Encoder::new().compress_vec(&payload).unwrap();
        assert_eq!(decompress(Compression::Snappy, &raw).unwrap(), payload);
    }

    #[test]
    fn base_offset_rewrite_keeps_crc_valid() {
        let rec = NewRecord {
            timestamp: 5,
            value: Some(Bytes::from_static(b"v")),
            ..Default::default()
        };
        let mut bytes = encode_batch(&[rec], &BatchOptions::default());
        batch::set_base_offset(&mut bytes, 42);
        batch::set_partition_leader_epoch(&mut bytes, 9);
        let header = batch::validate(&bytes).unwrap();
        assert_eq!(header.base_offset, 42);
        assert_eq!(header.partition_leader_epoch, 9);
    }
}
