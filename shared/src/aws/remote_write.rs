//! Amazon Managed Prometheus's data plane, as the `verify` probe uses it: a Prometheus remote
//! write of a few samples and a PromQL instant query, both SigV4-signed for the service `aps`
//! with the function's own credentials.
//!
//! The remote-write body is a `prometheus.WriteRequest` protobuf, hand-encoded (only the few
//! fields a sample needs: `timeseries { labels { name value } samples { value timestamp } }`),
//! in a snappy *block* made of literal elements only. Every snappy decoder accepts literals, so
//! no compression library is needed for a probe of a few hundred bytes.
//!
//! On the local stack, AMP's data plane is Prometheus behind the router: [`data_plane_base`]
//! puts the path of `prometheusEndpoint` (`/workspaces/<id>/`) on the configured endpoint URL
//! (`AWS_ENDPOINT_URL`) when one is set.

use std::time::{Duration, SystemTime};

use aws_credential_types::provider::ProvideCredentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;

use crate::aws::http::Response;
use crate::aws::Clients;
use crate::domain::error::{Error, Result};

/// The SigV4 service name of AMP (control and data plane).
pub const SIGNING_SERVICE: &str = "aps";
/// How long one data-plane call may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// One series with one sample: labels (including `__name__`), value, timestamp in ms.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: Vec<(String, String)>,
    pub value: f64,
    pub timestamp_ms: i64,
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn bytes_field(out: &mut Vec<u8>, field: u64, data: &[u8]) {
    varint(out, (field << 3) | 2);
    varint(out, data.len() as u64);
    out.extend_from_slice(data);
}

/// The `prometheus.WriteRequest` protobuf for `samples` (labels sorted by name, as remote write
/// requires).
pub fn encode_write_request(samples: &[Sample]) -> Vec<u8> {
    let mut request = Vec::new();
    for s in samples {
        let mut ts = Vec::new();
        let mut labels = s.labels.clone();
        labels.sort();
        for (name, value) in &labels {
            let mut label = Vec::new();
            bytes_field(&mut label, 1, name.as_bytes());
            bytes_field(&mut label, 2, value.as_bytes());
            bytes_field(&mut ts, 1, &label);
        }
        let mut sample = Vec::new();
        varint(&mut sample, (1 << 3) | 1); // double value: fixed64
        sample.extend_from_slice(&s.value.to_bits().to_le_bytes());
        varint(&mut sample, 2 << 3); // int64 timestamp: varint (two's complement for negatives)
        varint(&mut sample, s.timestamp_ms as u64);
        bytes_field(&mut ts, 2, &sample);
        bytes_field(&mut request, 1, &ts);
    }
    request
}

/// `data` as a snappy block (not the framed format): the uncompressed length as a varint, then
/// literal elements of at most 64 KiB each.
pub fn snappy_literal_block(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 16);
    varint(&mut out, data.len() as u64);
    for chunk in data.chunks(1 << 16) {
        // Tag 63 << 2: a literal whose length - 1 follows in 4 little-endian bytes.
        out.push(63 << 2);
        out.extend_from_slice(&(chunk.len() as u32 - 1).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    out
}

/// The remote-write request body for `samples` (`Content-Encoding: snappy`).
pub fn write_request_body(samples: &[Sample]) -> Vec<u8> {
    snappy_literal_block(&encode_write_request(samples))
}

/// The base URL of the workspace's data plane, ending with `/`: `prometheus_endpoint` itself
/// on AWS, or its path on `endpoint_override` (the local stack's router) when one is set.
pub fn data_plane_base(prometheus_endpoint: &str, endpoint_override: Option<&str>) -> String {
    let endpoint = if prometheus_endpoint.ends_with('/') {
        prometheus_endpoint.to_string()
    } else {
        format!("{prometheus_endpoint}/")
    };
    let Some(base) = endpoint_override.filter(|b| !b.is_empty()) else { return endpoint };
    let path = endpoint
        .split_once("://")
        .and_then(|(_, rest)| rest.find('/').map(|i| rest[i..].to_string()))
        .unwrap_or_else(|| "/".to_string());
    format!("{}{path}", base.trim_end_matches('/'))
}

/// The data-plane base URL for `prometheus_endpoint` with these clients: the SDK's configured
/// endpoint URL (`AWS_ENDPOINT_URL`, the local stack) replaces AMP's host when set.
pub fn data_plane_base_for(clients: &Clients, prometheus_endpoint: &str) -> String {
    data_plane_base(prometheus_endpoint, clients.sdk_config().endpoint_url())
}

/// Sends one request signed with SigV4 for `aps` in `region` with the clients' own credentials.
/// The signed headers include `headers`; the signature headers are never logged or returned.
pub async fn send_signed(
    clients: &Clients,
    region: &str,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Result<Response> {
    let what = format!("aps {method} {}", crate::aws::http::redact(url));
    let provider = clients
        .sdk_config()
        .credentials_provider()
        .ok_or_else(|| Error::Internal(format!("{what}: no AWS credentials provider is configured")))?;
    let creds = provider
        .provide_credentials()
        .await
        .map_err(|e| Error::Transient { operation: what.clone(), message: format!("loading AWS credentials: {e}") })?;
    let identity: Identity = creds.into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(SIGNING_SERVICE)
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| Error::Internal(format!("{what}: signing parameters: {e}")))?
        .into();
    let signable = SignableRequest::new(method, url, headers.iter().copied(), SignableBody::Bytes(&body))
        .map_err(|e| Error::Internal(format!("{what}: {e}")))?;
    let (instructions, _signature) =
        sign(signable, &params).map_err(|e| Error::Internal(format!("{what}: signing: {e}")))?.into_parts();
    let signed: Vec<(String, String)> = instructions.headers().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let mut all: Vec<(&str, &str)> = headers.to_vec();
    all.extend(signed.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    clients.http.send(method, url, &all, body, CALL_TIMEOUT).await
}

/// Remote-writes `samples` to `<base>api/v1/remote_write`.
pub async fn remote_write(clients: &Clients, region: &str, base: &str, samples: &[Sample]) -> Result<Response> {
    let url = format!("{base}api/v1/remote_write");
    let headers = [
        ("Content-Encoding", "snappy"),
        ("Content-Type", "application/x-protobuf"),
        ("X-Prometheus-Remote-Write-Version", "0.1.0"),
    ];
    send_signed(clients, region, "POST", &url, &headers, write_request_body(samples)).await
}

/// Characters left as is in a query-string value (RFC 3986 unreserved), as SigV4 expects.
const QUERY_VALUE: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// An instant PromQL query: `GET <base>api/v1/query?query=<promql>`.
pub async fn query(clients: &Clients, region: &str, base: &str, promql: &str) -> Result<Response> {
    let url = format!("{base}api/v1/query?query={}", percent_encoding::utf8_percent_encode(promql, QUERY_VALUE));
    send_signed(clients, region, "GET", &url, &[], Vec::new()).await
}

/// Reads a remote-write body back (for tests): the literal-only snappy block is unwrapped and
/// the protobuf decoded into samples. `None` when it is not what [`write_request_body`] makes.
pub fn decode_write_request_body(body: &[u8]) -> Option<Vec<Sample>> {
    fn read_varint(b: &[u8], i: &mut usize) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *b.get(*i)?;
            *i += 1;
            v |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Some(v);
            }
        }
        None
    }
    fn fields(b: &[u8]) -> Option<Vec<(u64, u64, &[u8])>> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            let key = read_varint(b, &mut i)?;
            let (field, wire) = (key >> 3, key & 7);
            match wire {
                0 => out.push((field, read_varint(b, &mut i)?, &b[..0])),
                1 => {
                    let v = b.get(i..i + 8)?;
                    i += 8;
                    out.push((field, u64::from_le_bytes(v.try_into().ok()?), &b[..0]));
                }
                2 => {
                    let n = read_varint(b, &mut i)? as usize;
                    out.push((field, 0, b.get(i..i + n)?));
                    i += n;
                }
                _ => return None,
            }
        }
        Some(out)
    }
    let mut i = 0;
    let len = read_varint(body, &mut i)? as usize;
    let mut raw = Vec::with_capacity(len);
    while i < body.len() {
        if body[i] != 63 << 2 {
            return None;
        }
        let n = u32::from_le_bytes(body.get(i + 1..i + 5)?.try_into().ok()?) as usize + 1;
        raw.extend_from_slice(body.get(i + 5..i + 5 + n)?);
        i += 5 + n;
    }
    if raw.len() != len {
        return None;
    }
    let mut samples = Vec::new();
    for (f, _, ts) in fields(&raw)? {
        if f != 1 {
            continue;
        }
        let mut s = Sample { labels: Vec::new(), value: 0.0, timestamp_ms: 0 };
        for (tf, _, part) in fields(ts)? {
            match tf {
                1 => {
                    let mut kv = (String::new(), String::new());
                    for (lf, _, text) in fields(part)? {
                        let text = String::from_utf8(text.to_vec()).ok()?;
                        if lf == 1 {
                            kv.0 = text;
                        } else if lf == 2 {
                            kv.1 = text;
                        }
                    }
                    s.labels.push(kv);
                }
                2 => {
                    for (sf, v, _) in fields(part)? {
                        if sf == 1 {
                            s.value = f64::from_bits(v);
                        } else if sf == 2 {
                            s.timestamp_ms = v as i64;
                        }
                    }
                }
                _ => {}
            }
        }
        samples.push(s);
    }
    Some(samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe() -> Sample {
        Sample {
            labels: vec![
                ("nonce".into(), "abc".into()),
                ("__name__".into(), "o11y_provisioner_probe".into()),
                ("deployment".into(), "dr-prod".into()),
            ],
            value: 1.0,
            timestamp_ms: 1_700_000_000_123,
        }
    }

    #[test]
    fn the_protobuf_has_the_known_bytes_of_a_one_label_sample() {
        let s = Sample { labels: vec![("a".into(), "b".into())], value: 1.0, timestamp_ms: 1 };
        // WriteRequest{timeseries(1){labels(1){name(1)="a" value(2)="b"} samples(2){value(1)=1.0 timestamp(2)=1}}}
        let expected: Vec<u8> = [
            vec![0x0a, 0x15], // timeseries, 21 bytes
            vec![0x0a, 0x06, 0x0a, 0x01, b'a', 0x12, 0x01, b'b'],
            vec![0x12, 0x0b, 0x09],
            1.0f64.to_le_bytes().to_vec(),
            vec![0x10, 0x01],
        ]
        .concat();
        assert_eq!(encode_write_request(&[s]), expected);
    }

    #[test]
    fn the_body_round_trips_with_sorted_labels() {
        let body = write_request_body(&[probe()]);
        let back = decode_write_request_body(&body).unwrap();
        assert_eq!(back.len(), 1);
        let names: Vec<&str> = back[0].labels.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["__name__", "deployment", "nonce"]);
        assert_eq!(back[0].value, 1.0);
        assert_eq!(back[0].timestamp_ms, 1_700_000_000_123);
    }

    #[test]
    fn snappy_literals_split_at_64_kib() {
        let data = vec![7u8; (1 << 16) + 3];
        let block = snappy_literal_block(&data);
        // varint(65539) = 3 bytes, then two literal elements of 5 header bytes each.
        assert_eq!(block.len(), 3 + 5 + (1 << 16) + 5 + 3);
        assert_eq!(block[3], 63 << 2);
        assert_eq!(&block[4..8], &((1u32 << 16) - 1).to_le_bytes());
    }

    #[test]
    fn the_data_plane_base_follows_the_endpoint_override() {
        let ep = "https://aps-workspaces.us-east-1.amazonaws.com/workspaces/ws-1/";
        assert_eq!(data_plane_base(ep, None), ep);
        assert_eq!(data_plane_base(ep.trim_end_matches('/'), None), ep);
        assert_eq!(data_plane_base(ep, Some("http://127.0.0.1:4566")), "http://127.0.0.1:4566/workspaces/ws-1/");
        assert_eq!(data_plane_base(ep, Some("http://127.0.0.1:4566/")), "http://127.0.0.1:4566/workspaces/ws-1/");
        assert_eq!(data_plane_base(ep, Some("")), ep);
    }

    #[test]
    fn query_values_are_fully_encoded() {
        let q = percent_encoding::utf8_percent_encode("m{a=\"b-c\"}", QUERY_VALUE).to_string();
        assert_eq!(q, "m%7Ba%3D%22b-c%22%7D");
    }
}
