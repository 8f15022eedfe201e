//! The tower middleware: attach HelseID tokens to the requests of any HTTP service.
//!
//! [`HelseIdLayer`] wraps a service (a hyper-util client, a tower stack, an axum router)
//! in [`HelseId`], which sets `Authorization: Bearer <token>` on every request. Tokens
//! come from a [`TokenCache`]: fetched once, shared by every clone of the layer,
//! refreshed in the background before they expire. On a warm cache the token is read
//! without a lock or an allocation, a long-lived clone of the service writes no memory
//! that another clone writes (it keeps a copy of the token of its own), and no request
//! waits on HelseID.
//!
//! A request acts for an organisation when it carries a [`Tenant`] in its extensions;
//! the layer then uses, and caches, a token for that tenant.
//!
//! An answer `401` whose `WWW-Authenticate` says `invalid_token` takes the token out of
//! use and sends the request once more with a fresh one, when the request kept a copy
//! of itself: its body can be replayed ([`Replay`]: any body passes through the layer,
//! and the cheap ones are copied), and its token had not yet been accepted (see
//! [`HelseIdLayerBuilder::retry_after_acceptance`]). Otherwise the 401 is returned as it
//! is, and the next request gets a new token.
//!
//! # Example
//! ```no_run
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use helseid::auth::HelseIdLayer;
//! use helseid::config::ClientConfig;
//! use helseid::endpoint::TokenEndpoint;
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let endpoint = TokenEndpoint::new(ClientConfig::from_file("helseid-client.json")?)?;
//! let mut client = ServiceBuilder::new()
//!     .layer(HelseIdLayer::new(endpoint))
//!     .service(helseid::transport::https_client::<Full<Bytes>>()?);
//!
//! let request = http::Request::get("https://cpe.test.grunndata.nhn.no/CommunicationPartyEvents")
//!     .body(Full::new(Bytes::new()))?;
//! let response = client.ready().await?.call(request).await?;
//! println!("{}", response.status());
//! # Ok(()) }
//! ```
//!
//! [`TokenCache`]: crate::cache::TokenCache
//! [`Tenant`]: crate::assertion::Tenant

mod future;
mod layer;
mod local;
mod replay;
mod service;

pub use future::ResponseFuture;
pub use layer::{HelseIdLayer, HelseIdLayerBuilder};
pub use replay::Replay;
pub use service::HelseId;
