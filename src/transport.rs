//! The default HTTP client: hyper-util's pooled client over rustls (aws-lc-rs, web PKI
//! roots; no OpenSSL).
//!
//! Any tower `Service<http::Request<_>>` can replace it: see
//! [`TokenEndpointBuilder::http_service`](crate::endpoint::TokenEndpointBuilder::http_service).
//!
//! # Example
//! ```
//! use bytes::Bytes;
//! use http_body_util::Full;
//!
//! # fn main() -> Result<(), helseid::Error> {
//! let client: helseid::transport::HttpsClient<Full<Bytes>> = helseid::transport::https_client()?;
//! # drop(client);
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::error::{Error, Result};

/// hyper-util's client over rustls, sending request bodies of type `B`.
///
/// It speaks `https`, and plain `http` too (which this crate allows only to loopback
/// addresses, for a local emulator).
pub type HttpsClient<B = Full<Bytes>> = Client<HttpsConnector<HttpConnector>, B>;

/// The TLS configuration of [`https_client`]: TLS 1.2 and 1.3 with aws-lc-rs, trusting
/// the Mozilla root certificates of `webpki-roots`.
///
/// # Errors
/// [`Error::Config`] naming `tls` if rustls refuses the configuration.
pub fn tls_config() -> Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::config("tls", e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// A new pooled HTTPS client with a 10 s connect timeout.
///
/// # Errors
/// As [`tls_config`].
pub fn https_client<B>() -> Result<HttpsClient<B>>
where
    B: http_body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<crate::error::BoxError>,
{
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_secs(10)));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls_config()?)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .build(connector))
}
