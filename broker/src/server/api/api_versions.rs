//! ApiVersions (answered before the state is open, KIP-511 fallback).

use super::*;

/// ApiVersions in any version, answered in v0 with our ranges when the version is unknown
/// (KIP-511) so the client can retry with one we know.
pub(super) fn api_versions(frame: &[u8], prefix: RequestPrefix) -> Result<Vec<u8>, String> {
    let version = prefix.api_version;
    let (min, max) = supported_range(ApiKey::ApiVersions).expect("ApiVersions is served");
    if version < min || version > max {
        let mut body = api_versions_body();
        body.error_code = ResponseError::UnsupportedVersion.code();
        return encode(prefix.correlation_id, 0, 0, &body);
    }
    let mut buf = Bytes::copy_from_slice(frame);
    let header = RequestHeader::decode(
        &mut buf,
        ApiKey::ApiVersions.request_header_version(version),
    )
    .map_err(|e| format!("bad ApiVersions header: {e}"))?;
    ApiVersionsRequest::decode(&mut buf, version)
        .map_err(|e| format!("bad ApiVersions v{version} body: {e}"))?;
    // The ApiVersions response header is always v0 (KIP-511).
    encode(header.correlation_id, 0, version, &api_versions_body())
}

pub(super) fn api_versions_body() -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_api_keys(
        crate::protocol::advertised_apis()
            .map(|(key, min, max)| {
                api_versions_response::ApiVersion::default()
                    .with_api_key(*key as i16)
                    .with_min_version(*min)
                    .with_max_version(*max)
            })
            .collect(),
    )
}
