//! The SFM chain (Sentral forskrivningsmodul), end to end and verified at every hop:
//!
//! 1. an EPJ holds a user's DPoP-bound token for `e-helse:sfm.api` and calls SFM;
//! 2. SFM verifies it with [`VerifyLayer`] (issuer, audience, scope, the DPoP proof), checks
//!    the person's security level and the SFM instance (`sfm-id`), exchanges the token at HelseID
//!    (RFC 8693) for a token to Reseptformidleren, bound to SFM's own DPoP key, and calls it;
//! 3. Reseptformidleren verifies the exchanged token with its own [`VerifyLayer`] and sees
//!    the EPJ as the client and SFM as the actor (`act`).
//!
//! Then the EPJ sends its own token straight to Reseptformidleren, which refuses it: the
//! token is not meant for it.
//!
//! Everything runs on 127.0.0.1: the emulator plays HelseID, two small axum apps play SFM
//! and Reseptformidleren, and this example plays the EPJ.
//!
//! ```sh
//! cargo run --example sfm_chain --features verify
//! ```

#![allow(clippy::print_stdout)] // an example prints what happens

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use tower::util::BoxCloneSyncService;
use tower::{ServiceBuilder, ServiceExt};

use helseid::HelseIdLayer;
use helseid::config::ClientConfig;
use helseid::dpop::DpopKey;
use helseid::endpoint::TokenEndpoint;
use helseid::exchange::SubjectToken;
use helseid::key::{Algorithm, PrivateJwk, SigningKey};
use helseid::refresh::{RefreshSession, TokenSet};
use helseid::text::escape;
use helseid::verify::{HelseIdClaims, VerifyLayer};
use helseid_emulator::{ClientRegistration, Emulator, Tenancy, TestTokenRequest};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// SFM's name in Selvbetjening: the `aud` of the tokens meant for it.
const SFM_AUDIENCE: &str = "e-helse:sfm.api";
/// What an EPJ asks for to call SFM.
const SFM_SCOPE: &str = "e-helse:sfm.api/sfm.api";
/// Reseptformidleren's name.
const RF_AUDIENCE: &str = "nhn:reseptformidleren";
/// What SFM exchanges the EPJ's token for.
const RF_SCOPE: &str = "nhn:reseptformidleren/access";

/// SFM's client to Reseptformidleren: each request's subject token is exchanged, and the
/// result attached with a DPoP proof of SFM's key.
type Downstream = BoxCloneSyncService<
    http::Request<Full<Bytes>>,
    http::Response<hyper::body::Incoming>,
    helseid::error::BoxError,
>;

struct Sfm {
    downstream: Downstream,
    reseptformidleren: String,
}

/// The start of a key thumbprint, enough to tell keys apart (escaped: outside text).
fn short(thumbprint: &str) -> String {
    escape(&thumbprint.chars().take(8).collect::<String>())
}

/// Who a verified token speaks for, in a few words (the claims are outside text: escaped).
fn who(claims: &HelseIdClaims) -> String {
    let text = |value: &Option<String>| escape(value.as_deref().unwrap_or("none"));
    format!(
        "client {}, actor {}, security level {}, {}",
        text(&claims.client_id),
        text(&claims.act.as_ref().and_then(|a| a.client_id.clone())),
        claims
            .security_level
            .map_or_else(|| "none".to_owned(), |l| l.to_string()),
        claims.jkt.as_deref().map_or_else(
            || "a Bearer token".to_owned(),
            |jkt| format!("bound to DPoP key {}", short(jkt))
        )
    )
}

/// SFM's `GET /prescriptions`. The layer has verified the token and its proof; SFM checks
/// what only it requires, then exchanges the token and calls Reseptformidleren.
async fn prescriptions(
    State(sfm): State<Arc<Sfm>>,
    Extension(claims): Extension<Arc<HelseIdClaims>>,
    headers: HeaderMap,
) -> Response {
    println!(
        "  SFM: the EPJ's token passed VerifyLayer: {}",
        who(&claims)
    );
    if let Err(refusal) = claims.require_security_level(4) {
        println!("  SFM: refused: {refusal}");
        return refusal.into_response();
    }
    let Some(sfm_id) = claims.sfm_id.as_deref() else {
        println!("  SFM: refused: the token has no sfm-id");
        return (StatusCode::FORBIDDEN, "the token has no sfm-id").into_response();
    };
    println!(
        "  SFM: security level 4 and sfm-id {}: accepted",
        escape(sfm_id)
    );

    let subject = match SubjectToken::from_headers(&headers) {
        Ok(subject) => subject,
        Err(e) => return (StatusCode::UNAUTHORIZED, e.to_string()).into_response(),
    };
    let Ok(mut request) = http::Request::get(&sfm.reseptformidleren).body(Full::new(Bytes::new()))
    else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    request.extensions_mut().insert(subject);
    let answer = match sfm.downstream.clone().oneshot(request).await {
        Ok(answer) => answer,
        Err(e) => {
            println!("  SFM: the call to Reseptformidleren failed: {e}");
            return StatusCode::BAD_GATEWAY.into_response();
        }
    };
    let status = answer.status();
    let body = match answer.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => return StatusCode::BAD_GATEWAY.into_response(),
    };
    println!("  SFM: Reseptformidleren answered {status}");
    if status.is_success() {
        (StatusCode::OK, body).into_response()
    } else {
        StatusCode::BAD_GATEWAY.into_response()
    }
}

/// Reseptformidleren's `GET /prescriptions`: the layer has verified the exchanged token.
async fn reseptformidleren(Extension(claims): Extension<Arc<HelseIdClaims>>) -> String {
    println!(
        "    Reseptformidleren: the exchanged token passed VerifyLayer: {}",
        who(&claims)
    );
    format!(
        "prescriptions for client {} via {}",
        escape(claims.client_id.as_deref().unwrap_or("none")),
        escape(
            claims
                .act
                .as_ref()
                .and_then(|a| a.client_id.as_deref())
                .unwrap_or("none")
        )
    )
}

/// Binds 127.0.0.1:0 and serves the router `build` makes for the server's base URL.
async fn serve(build: impl FnOnce(&str) -> Result<Router, Error>) -> Result<String, Error> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let router = build(&base)?;
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(base)
}

/// The layer each API puts in front of its routes: DPoP required (the default), this
/// API's audience alone, its scope.
fn verify(issuer: &str, audience: &str, scope: &str, base: &str) -> Result<VerifyLayer, Error> {
    Ok(VerifyLayer::builder(issuer)
        .audience(audience)
        .strict_single_audience(true)
        .scopes_any_of([scope])
        .public_base_url(base)
        .build()?)
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
    // HelseID: an EPJ (single-tenant) that may call SFM, and SFM, which may exchange the
    // tokens meant for it for tokens to Reseptformidleren.
    let epj_key = PrivateJwk::generate_ec(Algorithm::ES256)?;
    let sfm_key = PrivateJwk::generate_ec(Algorithm::ES256)?;
    let public = |jwk: &PrivateJwk| -> Result<_, Error> {
        Ok(SigningKey::from_jwk(jwk)?.public_jwk().clone())
    };
    let emulator = Emulator::builder()
        .client(
            ClientRegistration::new("epj", public(&epj_key)?)
                .scopes([SFM_SCOPE])
                .tenancy(Tenancy::Single {
                    parent_orgnr: "912345678".into(),
                }),
        )
        .client(
            ClientRegistration::new("sfm", public(&sfm_key)?)
                .scopes([RF_SCOPE])
                .audience(SFM_AUDIENCE),
        )
        .start()
        .await?;
    let issuer = emulator.issuer().to_owned();
    println!("HelseID (the emulator) at {issuer}");

    // Reseptformidleren.
    let rf_base = serve(|base| {
        Ok(Router::new()
            .route("/prescriptions", get(reseptformidleren))
            .layer(verify(&issuer, RF_AUDIENCE, RF_SCOPE, base)?))
    })
    .await?;

    // SFM: its exchanging client, then its API.
    let sfm_dpop = DpopKey::generate()?;
    let exchange = HelseIdLayer::builder(TokenEndpoint::new(config(&emulator, "sfm", &sfm_key)?)?)
        .token_exchange()
        .scopes([RF_SCOPE])
        .dpop(sfm_dpop.clone())
        .build();
    let downstream = ServiceBuilder::new()
        .layer(exchange)
        .service(helseid::transport::https_client::<Full<Bytes>>()?);
    let sfm = Arc::new(Sfm {
        downstream: BoxCloneSyncService::new(downstream),
        reseptformidleren: format!("{rf_base}/prescriptions"),
    });
    let sfm_base = serve(|base| {
        Ok(Router::new()
            .route("/prescriptions", get(prescriptions))
            .with_state(sfm)
            .layer(verify(&issuer, SFM_AUDIENCE, SFM_SCOPE, base)?))
    })
    .await?;

    // The EPJ: a user's session (here minted by the emulator's test token service, as if
    // the user had logged in), bound to the EPJ's DPoP key at its first refresh.
    let epj_dpop = PrivateJwk::generate_ec(Algorithm::ES256)?;
    let mut minted = emulator.mint_test_token(&TestTokenRequest::new("epj", [SFM_SCOPE]))?;
    minted["expires_in"] = 0.into(); // refresh at once, with a proof of the EPJ's key
    let session = RefreshSession::new(
        TokenEndpoint::new(config(&emulator, "epj", &epj_key)?)?,
        TokenSet::from_json(&minted.to_string())?.with_dpop_jwk(epj_dpop.clone())?,
    );
    println!(
        "EPJ's DPoP key {}, SFM's DPoP key {}",
        short(DpopKey::from_jwk(&epj_dpop)?.thumbprint()),
        short(sfm_dpop.thumbprint())
    );
    let epj = ServiceBuilder::new()
        .layer(session.layer().await)
        .service(helseid::transport::https_client::<Full<Bytes>>()?);

    println!("EPJ -> SFM: GET {sfm_base}/prescriptions (DPoP)");
    let request =
        http::Request::get(format!("{sfm_base}/prescriptions")).body(Full::new(Bytes::new()))?;
    let response = epj.clone().oneshot(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    println!(
        "EPJ: SFM answered {status}: {}",
        escape(&String::from_utf8_lossy(&body))
    );
    println!("HelseID: {} token exchange(s)", emulator.token_exchanges());
    if !status.is_success() {
        return Err(format!("SFM answered {status}").into());
    }

    // The EPJ's own token straight to Reseptformidleren, with a good proof: refused.
    let token = session.access_token().await?;
    let uri: Uri = format!("{rf_base}/prescriptions").parse()?;
    let proof = DpopKey::from_jwk(&epj_dpop)?.proof(&Method::GET, &uri, Some(token.secret()))?;
    let request = http::Request::get(uri)
        .header(header::AUTHORIZATION, token.authorization().clone())
        .header("dpop", proof.header_value().clone())
        .body(Full::new(Bytes::new()))?;
    let response = helseid::transport::https_client::<Full<Bytes>>()?
        .request(request)
        .await?;
    let challenge = response
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    println!(
        "EPJ -> Reseptformidleren directly: {} {}",
        response.status(),
        escape(challenge)
    );
    if response.status() != StatusCode::UNAUTHORIZED {
        return Err("Reseptformidleren accepted a token meant for SFM".into());
    }
    Ok(())
}
