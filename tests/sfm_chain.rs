//! The SFM chain end to end (issue 28 part 3), over real sockets on 127.0.0.1: an EPJ
//! holds a user's token for `e-helse:sfm.api` from the emulator and calls an SFM-like
//! service; that service verifies it with `VerifyLayer` (audience, scope, the SFM
//! instance claim, security level 4), exchanges it with the crate's token exchange and
//! calls a prescription-broker-like API (Reseptformidleren), which verifies the exchanged
//! token with `VerifyLayer` and sees the EPJ as the client and SFM in `act`. With Bearer
//! tokens and with DPoP (the EPJ's token bound to the EPJ's key, the exchanged token to
//! SFM's, a proof checked at each hop); the refusals along the way.
#![cfg(feature = "verify")]

mod support;

#[path = "support/issuer.rs"]
mod issuer;

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;

use helseid::HelseIdLayer;
use helseid::dpop::DpopKey;
use helseid::endpoint::TokenEndpoint;
use helseid::exchange::SubjectToken;
use helseid::key::{Algorithm, PrivateJwk};
use helseid::refresh::{RefreshSession, TokenSet};
use helseid::verify::{Dpop, HelseIdClaims, VerifyLayer, names};
use helseid_emulator::{Emulator, Tenancy, TestTokenRequest};
use issuer::parse_challenges;
use support::TestClient;

/// SFM's name in Selvbetjening: the `aud` of tokens meant for it.
const SFM_AUD: &str = "e-helse:sfm.api";
/// The scope an EPJ asks for to call SFM.
const SFM_SCOPE: &str = "e-helse:sfm.api/sfm.api";
/// The prescription broker's name.
const RF_AUD: &str = "nhn:reseptformidleren";
/// The scope SFM exchanges the EPJ's token for.
const RF_SCOPE: &str = "nhn:reseptformidleren/access";
/// The EPJ's legal entity (a single-tenant client).
const EPJ_ORGNR: &str = "912345678";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Bearer,
    Dpop,
}

impl Mode {
    fn dpop(self) -> Dpop {
        match self {
            Mode::Bearer => Dpop::Disabled,
            Mode::Dpop => Dpop::Required,
        }
    }

    fn scheme(self) -> &'static str {
        match self {
            Mode::Bearer => "Bearer",
            Mode::Dpop => "DPoP",
        }
    }
}

/// SFM's client to the broker: every request's subject token exchanged and attached.
type Downstream = BoxCloneSyncService<
    Request<Full<Bytes>>,
    http::Response<hyper::body::Incoming>,
    helseid::error::BoxError,
>;

struct Sfm {
    downstream: Downstream,
    broker_url: String,
}

/// What a verified token says, as both services report it.
fn verdict(claims: &HelseIdClaims) -> Value {
    json!({
        "client_id": claims.client_id,
        "act": claims.act.as_ref().and_then(|a| a.client_id.clone()),
        "scopes": claims.scopes,
        "audience": claims.audience,
        "security_level": claims.security_level,
        "sfm_id": claims.sfm_id,
        "journal_id": claims.journal_id,
        "jkt": claims.jkt,
    })
}

/// The broker's `GET /prescriptions`: the layer has verified the exchanged token.
async fn broker(Extension(claims): Extension<Arc<HelseIdClaims>>) -> Json<Value> {
    Json(verdict(&claims))
}

/// SFM's `GET /prescriptions`: the layer has verified the EPJ's token (signature, issuer,
/// audience, scope, DPoP proof); the handler checks the person's security level and the
/// SFM instance (`sfm-id`), exchanges the token and calls the broker.
async fn sfm(
    State(sfm): State<Arc<Sfm>>,
    Extension(claims): Extension<Arc<HelseIdClaims>>,
    headers: HeaderMap,
) -> Response {
    if let Err(refusal) = claims.require_security_level(4) {
        return refusal.into_response::<axum::body::Body>();
    }
    if claims.sfm_id.is_none() {
        return (
            StatusCode::FORBIDDEN,
            Json(json!({
                "error": "no_sfm_id",
                "detail": "the token has no e-helse:sfm.api/client/claims/sfm-id claim",
            })),
        )
            .into_response();
    }
    let subject = match SubjectToken::from_headers(&headers) {
        Ok(subject) => subject,
        Err(e) => return (StatusCode::UNAUTHORIZED, e.to_string()).into_response(),
    };
    let mut request = Request::get(format!("{}/prescriptions", sfm.broker_url))
        .body(Full::new(Bytes::new()))
        .expect("request");
    request.extensions_mut().insert(subject);
    let answer = match sfm.downstream.clone().oneshot(request).await {
        Ok(answer) => answer,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let status = answer.status();
    let challenge = answer
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = answer.into_body().collect().await.expect("body").to_bytes();
    let broker = serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null);
    let status_code = if status.is_success() {
        StatusCode::OK
    } else {
        StatusCode::BAD_GATEWAY
    };
    (
        status_code,
        Json(json!({
            "sfm": verdict(&claims),
            "broker_status": status.as_u16(),
            "broker_challenge": challenge,
            "broker": broker,
        })),
    )
        .into_response()
}

/// Binds 127.0.0.1:0 and serves the router `build` makes from the base URL.
async fn serve(build: impl FnOnce(&str) -> Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let router = build(&base);
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    base
}

/// The emulator, the broker and SFM, in one mode.
struct Chain {
    mode: Mode,
    emulator: Emulator,
    epj: TestClient,
    /// The EPJ's DPoP key (its tokens are bound to it in DPoP mode).
    epj_dpop: PrivateJwk,
    /// SFM's DPoP key: the exchanged tokens are bound to it in DPoP mode.
    sfm_dpop: DpopKey,
    sfm_url: String,
    broker_url: String,
}

impl Chain {
    async fn start(mode: Mode) -> Chain {
        let epj = TestClient::ec("epj");
        let sfm_client = TestClient::ec("sfm");
        let emulator = Emulator::builder()
            .client(epj.registration(&[SFM_SCOPE]).tenancy(Tenancy::Single {
                parent_orgnr: EPJ_ORGNR.into(),
            }))
            .client(sfm_client.registration(&[RF_SCOPE]).audience(SFM_AUD))
            .start()
            .await
            .expect("emulator");
        let issuer = emulator.issuer().to_owned();

        let broker_url = serve(|base| {
            Router::new().route("/prescriptions", get(broker)).layer(
                VerifyLayer::builder(&issuer)
                    .audience(RF_AUD)
                    .strict_single_audience(true)
                    .scopes_any_of([RF_SCOPE])
                    .dpop(mode.dpop())
                    .public_base_url(base)
                    .build()
                    .expect("broker's layer"),
            )
        })
        .await;

        let sfm_dpop = DpopKey::generate().expect("SFM's DPoP key");
        let mut exchange = HelseIdLayer::builder(
            TokenEndpoint::new(sfm_client.config(&issuer, &[RF_SCOPE])).expect("endpoint"),
        )
        .token_exchange()
        .scopes([RF_SCOPE]);
        if mode == Mode::Dpop {
            exchange = exchange.dpop(sfm_dpop.clone());
        }
        let downstream = tower::ServiceBuilder::new()
            .layer(exchange.build())
            .service(helseid::transport::https_client::<Full<Bytes>>().expect("client"));
        let state = Arc::new(Sfm {
            downstream: BoxCloneSyncService::new(downstream),
            broker_url: broker_url.clone(),
        });
        let sfm_url = serve(|base| {
            Router::new()
                .route("/prescriptions", get(sfm))
                .with_state(state)
                .layer(
                    VerifyLayer::builder(&issuer)
                        .audience(SFM_AUD)
                        .strict_single_audience(true)
                        .scopes_any_of([SFM_SCOPE])
                        .dpop(mode.dpop())
                        .public_base_url(base)
                        .build()
                        .expect("SFM's layer"),
                )
        })
        .await;

        Chain {
            mode,
            emulator,
            epj,
            epj_dpop: PrivateJwk::generate_ec(Algorithm::ES256).expect("EPJ's DPoP key"),
            sfm_dpop,
            sfm_url,
            broker_url,
        }
    }

    /// The EPJ's access token for a person logged in as `request` says: minted by the
    /// emulator; in DPoP mode refreshed once with a proof of the EPJ's key, which binds
    /// the session (and the token) to it.
    async fn epj_token(&self, request: &TestTokenRequest) -> String {
        let mut minted = self.emulator.mint_test_token(request).expect("minted");
        match self.mode {
            Mode::Bearer => minted["access_token"]
                .as_str()
                .expect("access_token")
                .to_owned(),
            Mode::Dpop => {
                minted["expires_in"] = json!(0);
                let set = TokenSet::from_json(&minted.to_string())
                    .expect("token set")
                    .with_dpop_jwk(self.epj_dpop.clone())
                    .expect("a DPoP set");
                let endpoint = TokenEndpoint::new(self.epj.config(self.emulator.issuer(), &[]))
                    .expect("endpoint");
                let token = RefreshSession::new(endpoint, set)
                    .access_token()
                    .await
                    .expect("a DPoP-bound token");
                token.secret().to_owned()
            }
        }
    }

    /// A token for the default test person (security level 4) with the SFM scope.
    async fn person_token(&self) -> String {
        self.epj_token(&TestTokenRequest::new("epj", [SFM_SCOPE]))
            .await
    }

    fn epj_thumbprint(&self) -> String {
        DpopKey::from_jwk(&self.epj_dpop)
            .expect("key")
            .thumbprint()
            .to_owned()
    }

    /// GETs `url` as the EPJ does: the token with this mode's scheme and, for DPoP, a
    /// fresh proof of the EPJ's key. Returns the status, headers, body and the proof.
    async fn get(&self, url: &str, token: &str) -> (StatusCode, HeaderMap, Value, String) {
        let uri: Uri = url.parse().expect("URL");
        let mut request = Request::get(uri.clone()).header(
            header::AUTHORIZATION,
            format!("{} {token}", self.mode.scheme()),
        );
        let mut proof = String::new();
        if self.mode == Mode::Dpop {
            let made = DpopKey::from_jwk(&self.epj_dpop)
                .expect("key")
                .proof(&Method::GET, &uri, Some(token))
                .expect("proof");
            proof = made.as_str().to_owned();
            request = request.header("dpop", made.header_value().clone());
        }
        let (status, headers, body) =
            support::send(request.body(Full::new(Bytes::new())).expect("request")).await;
        let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
        (status, headers, body, proof)
    }
}

/// The challenge of `headers` whose scheme is `scheme`.
fn challenge(headers: &HeaderMap, scheme: &str) -> issuer::Challenge {
    let values: Vec<&str> = headers
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .map(|v| v.to_str().expect("ASCII"))
        .collect();
    parse_challenges(&values)
        .into_iter()
        .find(|c| c.scheme.eq_ignore_ascii_case(scheme))
        .unwrap_or_else(|| panic!("no {scheme} challenge in {values:?}"))
}

async fn the_chain_passes(mode: Mode) {
    let chain = Chain::start(mode).await;
    let token = chain.person_token().await;
    let (status, _, body, _) = chain
        .get(&format!("{}/prescriptions", chain.sfm_url), &token)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // SFM saw the EPJ's token: the EPJ, the person at level 4, the SFM instance.
    let sfm = &body["sfm"];
    assert_eq!(sfm["client_id"], "epj");
    assert_eq!(sfm["act"], Value::Null);
    assert_eq!(sfm["audience"], json!([SFM_AUD]));
    assert_eq!(sfm["security_level"], 4);
    assert!(sfm["sfm_id"].is_string(), "{sfm}");

    // The broker saw the exchanged token: still the EPJ, with SFM as the actor.
    assert_eq!(body["broker_status"], 200, "{body}");
    let broker = &body["broker"];
    assert_eq!(broker["client_id"], "epj");
    assert_eq!(broker["act"], "sfm");
    assert_eq!(broker["audience"], json!([RF_AUD]));
    assert_eq!(broker["scopes"], json!([RF_SCOPE]));
    assert_eq!(broker["security_level"], 4, "the person travels along");
    assert_eq!(chain.emulator.token_exchanges(), 1);

    match mode {
        Mode::Bearer => {
            assert_eq!(sfm["jkt"], Value::Null);
            assert_eq!(broker["jkt"], Value::Null);
        }
        Mode::Dpop => {
            // Each hop's token bound to its caller's key; each layer (DPoP required)
            // checked a proof of that key.
            assert_eq!(sfm["jkt"], chain.epj_thumbprint().as_str());
            assert_eq!(broker["jkt"], chain.sfm_dpop.thumbprint());
        }
    }

    // A second call: the exchanged token is reused, not exchanged again.
    let (status, _, body, _) = chain
        .get(&format!("{}/prescriptions", chain.sfm_url), &token)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(chain.emulator.token_exchanges(), 1);
}

#[tokio::test]
async fn the_chain_passes_with_bearer_tokens() {
    the_chain_passes(Mode::Bearer).await;
}

#[tokio::test]
async fn the_chain_passes_with_dpop_bound_tokens_and_a_proof_at_each_hop() {
    the_chain_passes(Mode::Dpop).await;
}

/// The EPJ's own token sent straight to the broker: refused by the broker's layer, the
/// token is not meant for it (401 `invalid_token`, in the scheme the request used).
async fn the_epjs_own_token_is_refused_by_the_broker(mode: Mode) {
    let chain = Chain::start(mode).await;
    let token = chain.person_token().await;
    let (status, headers, body, proof) = chain
        .get(&format!("{}/prescriptions", chain.broker_url), &token)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let challenge = challenge(&headers, mode.scheme());
    assert_eq!(
        challenge.param("error"),
        Some("invalid_token"),
        "{challenge:?}"
    );
    assert_eq!(
        challenge.param("error_description"),
        Some("the token is not meant for this API")
    );
    let answer = format!("{headers:?} {body}");
    support::assert_quotes_no_secret(&answer, &[&token, &proof]);
    assert_eq!(chain.emulator.token_exchanges(), 0);
}

#[tokio::test]
async fn the_epjs_own_bearer_token_is_refused_by_the_broker() {
    the_epjs_own_token_is_refused_by_the_broker(Mode::Bearer).await;
}

#[tokio::test]
async fn the_epjs_own_dpop_token_is_refused_by_the_broker() {
    the_epjs_own_token_is_refused_by_the_broker(Mode::Dpop).await;
}

#[tokio::test]
async fn sfm_refuses_a_login_below_security_level_4_before_any_exchange() {
    for mode in [Mode::Bearer, Mode::Dpop] {
        let chain = Chain::start(mode).await;
        let token = chain
            .epj_token(&TestTokenRequest::new("epj", [SFM_SCOPE]).security_level("3"))
            .await;
        let (status, headers, body, proof) = chain
            .get(&format!("{}/prescriptions", chain.sfm_url), &token)
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{mode:?}: {body}");
        let challenge = challenge(&headers, mode.scheme());
        assert_eq!(
            challenge.param("error"),
            Some("insufficient_scope"),
            "{challenge:?}"
        );
        support::assert_quotes_no_secret(&format!("{headers:?} {body}"), &[&token, &proof]);
        assert_eq!(chain.emulator.token_exchanges(), 0, "{mode:?}");
    }
}

#[tokio::test]
async fn sfm_refuses_a_proof_used_twice() {
    let chain = Chain::start(Mode::Dpop).await;
    let token = chain.person_token().await;
    let url = format!("{}/prescriptions", chain.sfm_url);
    let (status, _, body, proof) = chain.get(&url, &token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The same proof again: its jti was seen.
    let replayed = Request::get(&url)
        .header(header::AUTHORIZATION, format!("DPoP {token}"))
        .header("dpop", &proof)
        .body(Full::new(Bytes::new()))
        .expect("request");
    let (status, headers, _) = support::send(replayed).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let challenge = challenge(&headers, "DPoP");
    assert_eq!(challenge.param("error"), Some("invalid_dpop_proof"));
    // The same token as Bearer: a bound token needs its proof.
    let bearer = Request::get(&url)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Full::new(Bytes::new()))
        .expect("request");
    let (status, headers, _) = support::send(bearer).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        headers
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .any(|v| v.to_str().is_ok_and(|v| v.starts_with("DPoP algs="))),
        "{headers:?}"
    );
    assert_eq!(chain.emulator.token_exchanges(), 1, "only the first call");
}

#[tokio::test]
async fn sfm_refuses_a_token_without_the_sfm_id_claim() {
    for mode in [Mode::Bearer, Mode::Dpop] {
        let chain = Chain::start(mode).await;
        // The EPJ's token as HelseID issued it, less the sfm-id claim, signed with the
        // emulator's key: every check of the layer passes, SFM's own does not.
        let (_, mut claims) = support::decode_jwt(&chain.person_token().await);
        assert!(
            claims
                .as_object_mut()
                .expect("claims")
                .remove(names::SFM_ID)
                .is_some(),
            "HelseID issues sfm-id for SFM's audience: {claims}"
        );
        let token = chain.emulator.sign_access_token(&claims).expect("signed");
        let (status, _, body, proof) = chain
            .get(&format!("{}/prescriptions", chain.sfm_url), &token)
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{mode:?}: {body}");
        assert_eq!(body["error"], "no_sfm_id");
        support::assert_quotes_no_secret(&body.to_string(), &[&token, &proof]);
        assert_eq!(chain.emulator.token_exchanges(), 0, "{mode:?}");
    }
}
