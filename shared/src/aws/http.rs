//! A small HTTPS client for what the AWS SDK does not cover: the CloudFormation response PUT to a
//! presigned S3 URL, the Grafana HTTP API of a workspace, and Prometheus remote write. Built once
//! per cold start (with the other clients), on the TLS stack the SDK already uses.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

use crate::domain::error::{Error, Result};

/// A response, fully read.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }
}

/// The client. Cheap to clone.
#[derive(Clone, Debug)]
pub struct HttpClient {
    inner: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl HttpClient {
    /// HTTPS (with the platform's root certificates) and plain HTTP (the local stack).
    pub fn new() -> Result<Self> {
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(provider)
            .map_err(|e| Error::Internal(format!("TLS roots: {e}")))?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self { inner: Client::builder(TokioExecutor::new()).build(https) })
    }

    /// Plain HTTP only (no TLS roots could be loaded).
    pub fn plain() -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let config = rustls::ClientConfig::builder_with_provider(provider.into())
            .with_safe_default_protocol_versions()
            .map(|b| b.with_root_certificates(rustls::RootCertStore::empty()).with_no_client_auth());
        let https = match config {
            Ok(c) => hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(c)
                .https_or_http()
                .enable_http1()
                .wrap_connector(http),
            Err(_) => hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(
                    rustls::ClientConfig::builder()
                        .with_root_certificates(rustls::RootCertStore::empty())
                        .with_no_client_auth(),
                )
                .https_or_http()
                .enable_http1()
                .wrap_connector(http),
        };
        Self { inner: Client::builder(TokioExecutor::new()).build(https) }
    }

    /// Sends one request; transport failures and timeouts are `TransientError`s.
    pub async fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Response> {
        let what = format!("{method} {}", redact(url));
        let mut req = hyper::Request::builder().method(method).uri(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(Bytes::from(body))).map_err(|e| Error::Internal(format!("{what}: {e}")))?;
        let call = async {
            let resp = self.inner.request(req).await.map_err(|e| transient(&what, e))?;
            let status = resp.status().as_u16();
            let headers = resp
                .headers()
                .iter()
                .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).to_string()))
                .collect();
            let body = resp.into_body().collect().await.map_err(|e| transient(&what, e))?.to_bytes().to_vec();
            Ok(Response { status, headers, body })
        };
        tokio::time::timeout(timeout, call).await.map_err(|_| Error::Transient {
            operation: what.clone(),
            message: format!("no answer within {timeout:?}"),
        })?
    }
}

fn transient(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Transient { operation: what.to_string(), message: e.to_string() }
}

/// The URL without its query string: presigned URLs carry credentials there, never log them.
pub fn redact(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_drops_the_signature() {
        assert_eq!(redact("https://b.s3.amazonaws.com/k?X-Amz-Signature=abc"), "https://b.s3.amazonaws.com/k");
    }
}
