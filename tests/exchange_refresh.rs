//! Token exchange and refresh sessions through the layer, against the emulator.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, header};
use http_body_util::Full;
use tower::{ServiceBuilder, ServiceExt};

use helseid::cache::FetchToken;
use helseid::config::ClientConfig;
use helseid::endpoint::{TokenEndpoint, TokenRequest};
use helseid::exchange::SubjectToken;
use helseid::key::{Algorithm, PrivateJwk, SigningKey};
use helseid::refresh::{FileStore, RefreshSession, TokenSet, TokenStore};
use helseid::token::{AccessToken, TokenType};
use helseid::{HelseIdLayer, OAuthErrorCode};
use helseid_emulator::{ClientRegistration, Emulator};

const SFM_SCOPE: &str = "e-helse:sfm.api/access";
const SFM_AUDIENCE: &str = "e-helse:sfm.api";
const DOWNSTREAM_SCOPE: &str = "nhn:reseptformidleren/access";

struct Client {
    id: &'static str,
    jwk: PrivateJwk,
}

impl Client {
    fn new(id: &'static str) -> Self {
        Client {
            id,
            jwk: PrivateJwk::generate_ec(Algorithm::ES256).expect("key"),
        }
    }

    fn registration(&self, scopes: &[&str]) -> ClientRegistration {
        let public = SigningKey::from_jwk(&self.jwk)
            .expect("key")
            .public_jwk()
            .clone();
        ClientRegistration::new(self.id, public).scopes(scopes.iter().copied())
    }

    fn endpoint(&self, emulator: &Emulator) -> TokenEndpoint {
        let config = ClientConfig::builder()
            .client_id(self.id)
            .authority_url(emulator.issuer())
            .private_jwk(&self.jwk)
            .build()
            .expect("config");
        TokenEndpoint::new(config).expect("endpoint")
    }
}

/// An EPJ client with a token for SFM, and SFM registered to exchange such tokens.
async fn sfm_setup() -> (Emulator, Client, Client) {
    let epj = Client::new("epj");
    let sfm = Client::new("sfm");
    let emulator = Emulator::builder()
        .client(epj.registration(&[SFM_SCOPE]))
        .client(sfm.registration(&[DOWNSTREAM_SCOPE]).audience(SFM_AUDIENCE))
        .start()
        .await
        .expect("emulator");
    (emulator, epj, sfm)
}

/// A downstream service that answers with the `Authorization` it received.
use support::{Seen, recording_api as downstream};

/// A layer that exchanges each request's subject token for the downstream scope.
fn exchange_layer(source: impl FetchToken) -> HelseIdLayer {
    HelseIdLayer::builder(source)
        .token_exchange()
        .scopes([DOWNSTREAM_SCOPE])
        .build()
}

fn request_with(subject: Option<&SubjectToken>) -> Request<Full<Bytes>> {
    let mut request = Request::new(Full::new(Bytes::new()));
    if let Some(subject) = subject {
        request.extensions_mut().insert(subject.clone());
    }
    request
}

#[tokio::test]
async fn an_exchanged_token_carries_act_and_the_original_clients_claims() {
    let (emulator, epj, sfm) = sfm_setup().await;
    let epj_token = epj
        .endpoint(&emulator)
        .request(&TokenRequest::client_credentials([SFM_SCOPE]))
        .await
        .expect("EPJ token");
    let subject_claims = emulator
        .verify_access_token(epj_token.secret())
        .expect("valid");

    // SFM receives the EPJ's call and takes the token from its Authorization header.
    let mut incoming = http::HeaderMap::new();
    incoming.insert(header::AUTHORIZATION, epj_token.authorization().clone());
    let subject = SubjectToken::from_headers(&incoming).expect("subject");

    let seen = Seen::default();
    let layer = exchange_layer(sfm.endpoint(&emulator));
    let service = ServiceBuilder::new()
        .layer(layer)
        .service(downstream(seen.clone()));
    service
        .oneshot(request_with(Some(&subject)))
        .await
        .expect("downstream call");

    let sent = seen.lock().expect("lock")[0].clone();
    let token = sent.strip_prefix("Bearer ").expect("a bearer token");
    let claims = emulator
        .verify_access_token(token)
        .expect("the exchanged token verifies");
    assert_eq!(claims["act"]["client_id"], "sfm");
    assert_eq!(claims["client_id"], "epj", "the original client's identity");
    assert_eq!(
        claims["helseid://claims/client/claims/orgnr_parent"],
        subject_claims["helseid://claims/client/claims/orgnr_parent"]
    );
    assert!(
        claims["scope"].to_string().contains(DOWNSTREAM_SCOPE),
        "{claims}"
    );
    assert!(claims["exp"].as_i64() <= subject_claims["exp"].as_i64());
    assert_eq!(emulator.token_exchanges(), 1);
}

#[tokio::test]
async fn two_subject_tokens_make_two_cache_entries() {
    let (emulator, epj, sfm) = sfm_setup().await;
    let endpoint = epj.endpoint(&emulator);
    let mut subjects = Vec::new();
    for _ in 0..2 {
        let token = endpoint
            .request(&TokenRequest::client_credentials([SFM_SCOPE]))
            .await
            .expect("EPJ token");
        subjects.push(SubjectToken::new(token.secret()));
    }
    assert_ne!(subjects[0], subjects[1]);
    let seen = Seen::default();
    let layer = exchange_layer(sfm.endpoint(&emulator));
    let service = ServiceBuilder::new()
        .layer(layer.clone())
        .service(downstream(seen.clone()));
    for subject in subjects.iter().chain(subjects.iter()) {
        service
            .clone()
            .oneshot(request_with(Some(subject)))
            .await
            .expect("call");
    }
    assert_eq!(
        emulator.token_exchanges(),
        2,
        "one exchange per subject token"
    );
    assert_eq!(layer.cache().stats().fetches, 2);
    let seen = seen.lock().expect("lock");
    assert_eq!(seen[0], seen[2]);
    assert_eq!(seen[1], seen[3]);
    assert_ne!(seen[0], seen[1]);
}

#[tokio::test]
async fn a_request_without_a_subject_token_fails_clearly() {
    let (emulator, _, sfm) = sfm_setup().await;
    let layer = exchange_layer(sfm.endpoint(&emulator));
    let e = ServiceBuilder::new()
        .layer(layer)
        .service(downstream(Seen::default()))
        .oneshot(request_with(None))
        .await
        .unwrap_err();
    let e = e.downcast::<helseid::Error>().expect("a helseid::Error");
    assert!(matches!(*e, helseid::Error::SubjectToken { .. }), "{e}");
    assert!(e.to_string().contains("no SubjectToken"), "{e}");
    assert_eq!(emulator.token_requests(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_cached_exchange_never_outlives_its_subject_token() {
    use base64::Engine;
    let fetches = Arc::new(Mutex::new(Vec::new()));
    let record = fetches.clone();
    // A source that issues hour-long tokens: only the subject's expiry can end them.
    let source = helseid::cache::fetch_fn("sfm", move |request: TokenRequest| {
        record
            .lock()
            .expect("lock")
            .push(request.subject().map(SubjectToken::fingerprint));
        async { AccessToken::new("exchanged", TokenType::Bearer, Duration::from_secs(3600)) }
    });
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 120;
    let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::json!({ "exp": exp }).to_string());
    let subject = SubjectToken::new(format!("eyJhbGciOiJSUzI1NiJ9.{claims}.c2ln"));
    let layer = exchange_layer(source);
    let service = ServiceBuilder::new()
        .layer(layer)
        .service(downstream(Seen::default()));
    let call = || service.clone().oneshot(request_with(Some(&subject)));

    call().await.expect("first call");
    tokio::time::advance(Duration::from_secs(100)).await;
    call().await.expect("cached");
    assert_eq!(
        fetches.lock().expect("lock").len(),
        1,
        "still within the subject's life"
    );
    tokio::time::advance(Duration::from_secs(25)).await;
    call().await.expect("after the subject expired");
    assert_eq!(
        fetches.lock().expect("lock").len(),
        2,
        "the hour-long exchanged token was not used past the subject's expiry"
    );
}

/// An emulator with an EPJ client that holds a user session, and the session's set.
async fn user_session() -> (Emulator, Client, serde_json::Value) {
    let epj = Client::new("epj-user");
    let emulator = Emulator::builder()
        .client(epj.registration(&[support::CP_SCOPE]))
        .start()
        .await
        .expect("emulator");
    let minted = emulator
        .mint_user_tokens(epj.id, &[])
        .expect("a user token set");
    (emulator, epj, minted)
}

/// The minted set with its access token already expired: the next request refreshes.
fn expired_access(minted: &serde_json::Value) -> TokenSet {
    let mut minted = minted.clone();
    minted["expires_in"] = serde_json::json!(0);
    TokenSet::from_json(&minted.to_string()).expect("token set")
}

#[tokio::test]
async fn a_hundred_concurrent_requests_at_expiry_make_one_refresh() {
    let (emulator, epj, minted) = user_session().await;
    let session = RefreshSession::new(epj.endpoint(&emulator), expired_access(&minted));
    let seen = Seen::default();
    let service = ServiceBuilder::new()
        .layer(session.layer().await)
        .service(downstream(seen.clone()));
    let calls: Vec<_> = (0..100)
        .map(|_| tokio::spawn(service.clone().oneshot(request_with(None))))
        .collect();
    for call in calls {
        call.await.expect("task").expect("call");
    }
    assert_eq!(emulator.refreshes(), 1);
    assert_eq!(emulator.invalid_grants(), 0);
    assert_eq!(session.refreshes(), 1);
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 100);
    assert!(seen.iter().all(|v| *v == seen[0]), "one token for all");
    let token = seen[0].strip_prefix("Bearer ").expect("bearer");
    let claims = emulator.verify_access_token(token).expect("valid");
    assert_eq!(claims["helseid://claims/identity/pid"], "13116900216");
    // The refresh token rotated.
    let rotated = session.token_set().await.expect("a session");
    assert_ne!(
        rotated.refresh_token().secret(),
        minted["refresh_token"].as_str().expect("refresh token")
    );
}

#[tokio::test]
async fn refreshes_of_one_session_from_two_layers_run_one_after_the_other() {
    let (emulator, epj, minted) = user_session().await;
    let session = RefreshSession::new(epj.endpoint(&emulator), expired_access(&minted));
    let one = ServiceBuilder::new()
        .layer(session.layer().await)
        .service(downstream(Seen::default()));
    let two = ServiceBuilder::new()
        .layer(session.layer().await)
        .service(downstream(Seen::default()));
    let calls: Vec<_> = (0..20)
        .map(|i| {
            let service = if i % 2 == 0 { one.clone() } else { two.clone() };
            tokio::spawn(service.oneshot(request_with(None)))
        })
        .collect();
    for call in calls {
        call.await.expect("task").expect("call");
    }
    // Two caches, two refreshes, each with the refresh token the other left.
    assert_eq!(emulator.refreshes(), 2);
    assert_eq!(emulator.invalid_grants(), 0);
}

#[tokio::test]
async fn a_reused_refresh_token_means_log_in_again() {
    let (emulator, epj, minted) = user_session().await;
    let old = expired_access(&minted);
    let session = RefreshSession::new(epj.endpoint(&emulator), old.clone());
    session.refresh(&[]).await.expect("first refresh");

    // Someone kept the old set and uses it again.
    let stale = RefreshSession::new(epj.endpoint(&emulator), old);
    let e = stale.refresh(&[]).await.unwrap_err();
    assert!(e.is_login_required(), "{e}");
    assert_eq!(
        e.oauth_error().map(|o| &o.error),
        Some(&OAuthErrorCode::InvalidGrant)
    );
    assert_eq!(emulator.invalid_grants(), 1);
    // The session has ended: no more requests to HelseID.
    let requests = emulator.token_requests();
    assert!(stale.refresh(&[]).await.unwrap_err().is_login_required());
    assert_eq!(emulator.token_requests(), requests);
}

#[tokio::test]
async fn an_expired_refresh_token_means_log_in_again() {
    let (emulator, epj, minted) = user_session().await;
    let refresh = minted["refresh_token"].as_str().expect("refresh token");
    assert!(emulator.expire_refresh_token(refresh));
    let session = RefreshSession::new(epj.endpoint(&emulator), expired_access(&minted));
    let e = session.access_token().await.unwrap_err();
    assert!(e.is_login_required(), "{e}");

    // Known to have expired: no request at all.
    let mut known = minted.clone();
    known["rt_expires_in"] = serde_json::json!(0);
    known["expires_in"] = serde_json::json!(0);
    let set = TokenSet::from_json(&known.to_string()).expect("set");
    let requests = emulator.token_requests();
    let e = RefreshSession::new(epj.endpoint(&emulator), set)
        .access_token()
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("the refresh token has expired"),
        "{e}"
    );
    assert_eq!(emulator.token_requests(), requests);
}

#[tokio::test]
async fn the_file_store_keeps_the_rotated_set() {
    let (emulator, epj, minted) = user_session().await;
    let dir = std::env::temp_dir().join(format!("helseid-session-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let store = FileStore::new(dir.join("tokens.json"));
    store.save(&expired_access(&minted)).await.expect("save");

    let session = RefreshSession::from_store(epj.endpoint(&emulator), store.clone())
        .await
        .expect("session");
    let token = session.access_token().await.expect("refreshed");
    let stored = store.load().await.expect("load").expect("set");
    let current = session.token_set().await.expect("set");
    assert_eq!(stored.refresh_token(), current.refresh_token());
    assert_eq!(
        stored.access_token().expect("valid").secret(),
        token.secret()
    );

    // A new process carries on from the file.
    let again = RefreshSession::from_store(epj.endpoint(&emulator), store.clone())
        .await
        .expect("session");
    assert_eq!(
        again.access_token().await.expect("still valid").secret(),
        token.secret()
    );
    again
        .refresh(&[])
        .await
        .expect("refresh with the stored token");
    assert_eq!(emulator.invalid_grants(), 0);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_dpop_bound_session_refreshes_per_tenant_with_its_stored_key() {
    use helseid::assertion::Tenant;
    use helseid::dpop::DpopKey;
    let (emulator, epj, minted) = user_session().await;
    let dir = std::env::temp_dir().join(format!(
        "helseid-dpop-session-{}-{}",
        std::process::id(),
        emulator.issuer().rsplit(':').next().unwrap_or("0")
    ));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("tokens.json");
    let jwk = PrivateJwk::generate_ec(Algorithm::ES256).expect("key");
    let thumbprint = DpopKey::from_jwk(&jwk)
        .expect("key")
        .thumbprint()
        .to_owned();
    let set = expired_access(&minted)
        .with_dpop_jwk(jwk)
        .expect("a DPoP set");
    assert!(set.is_dpop_bound());
    FileStore::new(&path).save(&set).await.expect("stored");
    let session = RefreshSession::from_store(epj.endpoint(&emulator), FileStore::new(&path))
        .await
        .expect("session");

    // Through the session's layer, for a tenant: a refresh through the nonce
    // handshake, with the tenant in the assertion, bound to the stored key.
    let seen = Seen::default();
    let service = ServiceBuilder::new()
        .layer(session.layer().await)
        .service(downstream(seen.clone()));
    let tenant: Tenant = "912345678:987654321".parse().expect("tenant");
    // DPoP proofs name the URL: the requests carry absolute ones.
    let absolute = || {
        let mut request = request_with(None);
        *request.uri_mut() = http::Uri::from_static("https://api.test/records");
        request
    };
    let mut request = absolute();
    request.extensions_mut().insert(tenant);
    service.clone().oneshot(request).await.expect("call");
    assert_eq!(emulator.refreshes(), 1);
    assert!(emulator.dpop_nonce_challenges() >= 1, "the nonce handshake");
    let sent = seen.lock().expect("lock").clone();
    let token = sent[0].strip_prefix("DPoP ").expect("a DPoP token");
    let claims = emulator.verify_access_token(token).expect("valid");
    assert_eq!(claims["cnf"]["jkt"], thumbprint.as_str());
    assert_eq!(
        claims["helseid://claims/client/claims/orgnr_parent"],
        "912345678"
    );
    assert_eq!(
        claims["helseid://claims/client/claims/orgnr_child"],
        "987654321"
    );

    // Without the tenant: another refresh, another entry; the same key.
    service.clone().oneshot(absolute()).await.expect("call");
    assert_eq!(emulator.refreshes(), 2);
    let sent = seen.lock().expect("lock").clone();
    let token = sent[1].strip_prefix("DPoP ").expect("a DPoP token");
    let claims = emulator.verify_access_token(token).expect("valid");
    assert_eq!(claims["cnf"]["jkt"], thumbprint.as_str());
    assert!(
        claims
            .get("helseid://claims/client/claims/orgnr_parent")
            .is_none()
    );

    // The key went to the store with the rotated tokens; a new process picks it up.
    let stored = std::fs::read_to_string(&path).expect("stored set");
    assert!(stored.contains("dpop_jwk"), "the key is stored");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o077, 0, "owner-only: {mode:o}");
    }
    let again = RefreshSession::from_store(epj.endpoint(&emulator), FileStore::new(&path))
        .await
        .expect("session");
    let token = again
        .refresh(&[])
        .await
        .expect("refreshed with the stored key");
    assert_eq!(token.token_type(), &TokenType::DPoP);
    assert_eq!(emulator.invalid_grants(), 0);

    // A set whose key is another one: HelseID refuses the session's refresh token.
    let stolen = TokenSet::from_json(&std::fs::read_to_string(&path).expect("set"))
        .expect("set")
        .with_dpop_jwk(PrivateJwk::generate_ec(Algorithm::ES256).expect("key"))
        .expect("set");
    let thief = RefreshSession::new(epj.endpoint(&emulator), stolen);
    let err = thief.refresh(&[]).await.expect_err("another key");
    assert!(err.is_login_required(), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}
