//! An SFM-like service (Sentral forskrivningsmodul): it receives calls carrying an EPJ's
//! token for `e-helse:sfm.api`, exchanges that token at HelseID (RFC 8693) for a token to
//! a downstream API, and calls the downstream API with it. The new token keeps the EPJ's
//! identity and names SFM as the actor (`act`).
//!
//! Everything runs locally: the emulator plays HelseID, a small axum app plays the
//! downstream API (Reseptformidleren), and this example plays the EPJ too.
//!
//! ```sh
//! cargo run --example sfm
//! ```

#![allow(clippy::print_stdout)] // an example prints its result

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;

use helseid::HelseIdLayer;
use helseid::config::ClientConfig;
use helseid::endpoint::{TokenEndpoint, TokenRequest};
use helseid::exchange::SubjectToken;
use helseid::key::{Algorithm, PrivateJwk, SigningKey};
use helseid_emulator::{ClientRegistration, Emulator};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// The HTTP client SFM calls the downstream API with: it exchanges each request's
/// subject token and attaches the result.
type Downstream = BoxCloneSyncService<
    http::Request<Full<Bytes>>,
    http::Response<hyper::body::Incoming>,
    helseid::error::BoxError,
>;

struct Sfm {
    downstream: Downstream,
    downstream_url: String,
}

/// SFM's endpoint: `GET /prescriptions`, called by an EPJ with its own token.
async fn prescriptions(
    State(sfm): State<Arc<Sfm>>,
    headers: HeaderMap,
) -> Result<String, (StatusCode, String)> {
    let subject = SubjectToken::from_headers(&headers)
        .map_err(|e| (StatusCode::UNAUTHORIZED, e.to_string()))?;
    let mut request = http::Request::get(format!("{}/reseptformidleren", sfm.downstream_url))
        .body(Full::new(Bytes::new()))
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    request.extensions_mut().insert(subject);
    let response = sfm.downstream.clone().oneshot(request).await.map_err(|e| {
        (
            StatusCode::BAD_GATEWAY,
            format!("downstream call failed: {e}"),
        )
    })?;
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| (StatusCode::BAD_GATEWAY, e.to_string()))?
        .to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// The downstream API: accepts only tokens from the emulator, and says whose they are.
async fn reseptformidleren(
    State(emulator): State<Arc<Emulator>>,
    headers: HeaderMap,
) -> Result<String, StatusCode> {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(StatusCode::UNAUTHORIZED)?;
    let claims = emulator
        .verify_access_token(token)
        .map_err(|_| StatusCode::UNAUTHORIZED)?;
    Ok(format!(
        "Reseptformidleren was called for client `{}` by actor `{}` with scope `{}`",
        claims["client_id"].as_str().unwrap_or("?"),
        claims["act"]["client_id"].as_str().unwrap_or("none"),
        claims["scope"]
    ))
}

async fn serve(app: Router) -> Result<SocketAddr, Error> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

fn config(emulator: &Emulator, client_id: &str, jwk: &PrivateJwk) -> Result<ClientConfig, Error> {
    Ok(ClientConfig::builder()
        .client_id(client_id)
        .authority_url(emulator.issuer())
        .private_jwk(jwk)
        .build()?)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    // HelseID: an EPJ that may call SFM, and SFM, which may exchange tokens meant for it.
    let epj_key = PrivateJwk::generate_ec(Algorithm::ES256)?;
    let sfm_key = PrivateJwk::generate_ec(Algorithm::ES256)?;
    let public = |jwk: &PrivateJwk| -> Result<_, Error> {
        Ok(SigningKey::from_jwk(jwk)?.public_jwk().clone())
    };
    let emulator = Arc::new(
        Emulator::builder()
            .client(
                ClientRegistration::new("epj", public(&epj_key)?)
                    .scopes(["e-helse:sfm.api/access"]),
            )
            .client(
                ClientRegistration::new("sfm", public(&sfm_key)?)
                    .scopes(["nhn:reseptformidleren/access"])
                    .audience("e-helse:sfm.api"),
            )
            .start()
            .await?,
    );

    // The downstream API.
    let downstream_addr = serve(
        Router::new()
            .route("/reseptformidleren", get(reseptformidleren))
            .with_state(Arc::clone(&emulator)),
    )
    .await?;

    // SFM: exchanges every incoming token for one to the downstream API.
    let exchange = HelseIdLayer::builder(TokenEndpoint::new(config(&emulator, "sfm", &sfm_key)?)?)
        .token_exchange()
        .scopes(["nhn:reseptformidleren/access"])
        .build();
    let downstream = tower::ServiceBuilder::new()
        .layer(exchange)
        .service(helseid::transport::https_client::<Full<Bytes>>()?);
    let sfm = Arc::new(Sfm {
        downstream: BoxCloneSyncService::new(downstream),
        downstream_url: format!("http://{downstream_addr}"),
    });
    let sfm_addr = serve(
        Router::new()
            .route("/prescriptions", get(prescriptions))
            .with_state(sfm),
    )
    .await?;

    // The EPJ: a token for SFM, and a call to SFM with it.
    let epj = TokenEndpoint::new(config(&emulator, "epj", &epj_key)?)?;
    let token = epj
        .request(&TokenRequest::client_credentials([
            "e-helse:sfm.api/access",
        ]))
        .await?;
    let request = http::Request::get(format!("http://{sfm_addr}/prescriptions"))
        .header("authorization", token.authorization().clone())
        .body(Full::new(Bytes::new()))?;
    let response = helseid::transport::https_client::<Full<Bytes>>()?
        .request(request)
        .await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    println!("SFM answered {status}: {}", String::from_utf8_lossy(&body));
    println!("token exchanges at HelseID: {}", emulator.token_exchanges());
    if !status.is_success() {
        return Err(format!("SFM answered {status}").into());
    }
    Ok(())
}
