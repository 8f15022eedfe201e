//! Logging a user in (PAR, PKCE, DPoP, the loopback redirect, ID token validation)
//! against the emulator, its login page driven by a plain HTTP client.
#![cfg(feature = "login")]

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::Full;

use helseid::endpoint::TokenEndpoint;
use helseid::login::{LoggedIn, LoginClient, PendingLogin};
use helseid::refresh::RefreshSession;
use helseid::token::TokenType;
use helseid::{Error, IdTokenCheck, LoginError, OAuthErrorCode};
use helseid_emulator::{Emulator, IdTokenFault, TEST_PEOPLE};

use support::{
    CPAPI_SCOPE, TestClient, follow, form_body, get_text as get, log_in_at_page, login_form_id,
    send,
};

const LOGIN_SCOPES: [&str; 4] = ["openid", "profile", "offline_access", CPAPI_SCOPE];

/// An emulator with an EPJ client that must use DPoP, and the EPJ's login client.
async fn setup() -> (Emulator, TestClient, LoginClient) {
    let epj = TestClient::ec("epj");
    let emulator = Emulator::builder()
        .client(epj.registration(&[CPAPI_SCOPE]).require_dpop())
        .start()
        .await
        .expect("emulator");
    let login = LoginClient::new(endpoint(&emulator, &epj));
    (emulator, epj, login)
}

fn endpoint(emulator: &Emulator, client: &TestClient) -> TokenEndpoint {
    TokenEndpoint::new(client.config(emulator.issuer(), &[])).expect("endpoint")
}

/// Runs `pending` to its end while the tester logs in as `pid` on the page (or cancels).
async fn finish_with(
    emulator: &Emulator,
    pending: PendingLogin,
    pid: Option<&'static str>,
) -> helseid::Result<LoggedIn> {
    let url = pending.authorize_url().to_owned();
    let finishing = tokio::spawn(pending.finish());
    assert_eq!(
        log_in_at_page(emulator.issuer(), &url, pid).await,
        StatusCode::OK
    );
    finishing.await.expect("the login task")
}

fn login_error(result: helseid::Result<LoggedIn>) -> LoginError {
    match result {
        Err(Error::Login(error)) => error,
        other => panic!("expected a login error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_login_gives_a_dpop_bound_token_set_that_renews() {
    let (emulator, epj, login) = setup().await;
    let person = TEST_PEOPLE[1];
    let pending = login.start(LOGIN_SCOPES).await.expect("PAR");
    assert!(pending.redirect_uri().starts_with("http://127.0.0.1:"));
    assert!(pending.authorize_url().contains("request_uri=urn"));
    let logged_in = finish_with(&emulator, pending, Some(person.pid))
        .await
        .expect("logged in");
    assert_eq!(emulator.logins(), 1);
    assert!(
        emulator.dpop_nonce_challenges() >= 1,
        "the code exchange answered the token endpoint's DPoP nonce challenge"
    );

    let claims = logged_in.claims();
    assert_eq!(claims.name(), Some(person.name().as_str()));
    assert_eq!(claims.hpr_number(), Some(person.hpr_number));
    assert_eq!(claims.security_level(), Some("4"));
    assert_eq!(claims.pid(), Some(person.pid));

    let token = logged_in.access_token();
    assert_eq!(*token.token_type(), TokenType::DPoP);
    let access = emulator
        .verify_access_token(token.secret())
        .expect("an emulator token");
    assert_eq!(access["helseid://claims/identity/pid"], person.pid);
    assert_eq!(access["helseid://claims/hpr/hpr_number"], person.hpr_number);
    assert_eq!(access["aud"], "nhn:cp-api");
    let jkt = access["cnf"]["jkt"].as_str().expect("cnf.jkt").to_owned();

    let set = logged_in.token_set().expect("a refresh token").clone();
    assert!(set.is_dpop_bound());
    assert!(set.id_token().is_some());
    let debug = format!("{logged_in:?} {set:?}");
    assert!(!debug.contains(token.secret()), "{debug}");
    assert!(!debug.contains(set.refresh_token().secret()), "{debug}");

    // The refresh session renews the set with proofs by the login's key.
    let session = RefreshSession::new(endpoint(&emulator, &epj), set.clone());
    let renewed = session.refresh(&[]).await.expect("refresh");
    assert_eq!(*renewed.token_type(), TokenType::DPoP);
    let renewed_claims = emulator
        .verify_access_token(renewed.secret())
        .expect("an emulator token");
    assert_eq!(renewed_claims["cnf"]["jkt"], jkt.as_str());
    assert_eq!(renewed_claims["helseid://claims/identity/pid"], person.pid);
    assert_eq!(emulator.refreshes(), 1);
    let rotated = session.token_set().await.expect("a set");
    assert_ne!(
        rotated.refresh_token().secret(),
        set.refresh_token().secret()
    );
    assert_eq!(rotated.id_token(), set.id_token(), "kept for the logout");
}

#[tokio::test]
async fn a_cancelled_login_is_access_denied() {
    let (emulator, _, login) = setup().await;
    let pending = login.start(LOGIN_SCOPES).await.expect("PAR");
    let error = login_error(finish_with(&emulator, pending, None).await);
    assert!(
        matches!(error, LoginError::AccessDenied { .. }),
        "{error:?}"
    );
    assert_eq!(emulator.logins(), 0);
}

#[tokio::test]
async fn a_redirect_with_another_state_gets_400_and_the_login_goes_on() {
    let (emulator, _, login) = setup().await;
    let pending = login.start(LOGIN_SCOPES).await.expect("PAR");
    let url = pending.authorize_url().to_owned();
    let redirect = pending.redirect_uri().to_owned();
    let finishing = tokio::spawn(pending.finish());
    // A local process or a web page probing the port, with a stolen code: refused, and
    // the page does not say "Logged in".
    for forged in [
        format!("{redirect}?code=stolen-code&state=forged"),
        format!("{redirect}?code=stolen-code"),
        format!("{redirect}?error=access_denied&state=forged"),
    ] {
        let (status, _, page) = get(&forged).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{forged}");
        assert!(
            page.contains("Login not completed") && !page.contains("Logged in"),
            "{page}"
        );
    }
    assert!(!finishing.is_finished(), "the wait goes on");
    // The real login still completes.
    assert_eq!(
        log_in_at_page(emulator.issuer(), &url, Some(TEST_PEOPLE[0].pid)).await,
        StatusCode::OK
    );
    let logged_in = finishing.await.expect("the login task").expect("logged in");
    assert!(logged_in.token_set().is_some());
}

/// The `request_uri` in an authorize URL.
fn request_uri(authorize_url: &str) -> String {
    let query = authorize_url.split_once('?').expect("a query").1;
    form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| name == "request_uri")
        .map(|(_, value)| value.into_owned())
        .expect("request_uri")
}

#[tokio::test]
async fn an_expired_pushed_request_is_refused() {
    let (emulator, _, login) = setup().await;
    let pending = login.start(LOGIN_SCOPES).await.expect("PAR");
    let url = pending.authorize_url().to_owned();
    assert!(emulator.expire_par_request(&request_uri(&url)));
    let finishing = tokio::spawn(pending.finish());
    let (status, headers, _) = get(&url).await;
    assert_eq!(
        status,
        StatusCode::SEE_OTHER,
        "back to the app with an error"
    );
    assert_eq!(follow(&headers).await, StatusCode::OK);
    let error = login_error(finishing.await.expect("task"));
    match error {
        LoginError::RequestExpired { description, .. } => {
            assert!(description.is_some_and(|d| d.contains("expired")));
        }
        other => panic!("expected RequestExpired, got {other:?}"),
    }
}

#[tokio::test]
async fn a_reused_request_uri_is_refused() {
    let (emulator, _, login) = setup().await;
    let pending = login.start(LOGIN_SCOPES).await.expect("PAR");
    let url = pending.authorize_url().to_owned();
    let finishing = tokio::spawn(pending.finish());
    assert_eq!(
        get(&url).await.0,
        StatusCode::OK,
        "the first use shows the page"
    );
    let (status, headers, _) = get(&url).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(follow(&headers).await, StatusCode::OK);
    match login_error(finishing.await.expect("task")) {
        LoginError::RequestExpired { description, .. } => {
            assert!(description.is_some_and(|d| d.contains("used already")));
        }
        other => panic!("expected RequestExpired, got {other:?}"),
    }
    // An authorize request without PAR gets no page at all.
    let (status, _, html) = get(&format!(
        "{}/connect/authorize?client_id=epj&response_type=code",
        emulator.issuer()
    ))
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("response_type"), "{html}");
}

#[tokio::test]
async fn a_pushed_request_with_a_bad_assertion_is_refused() {
    let (emulator, _, _) = setup().await;
    // The same client id, and a key HelseID does not know.
    let impostor = TestClient::ec("epj");
    let login = LoginClient::new(endpoint(&emulator, &impostor));
    match login.start(LOGIN_SCOPES).await {
        Err(Error::Login(LoginError::ParRefused { status, error, .. })) => {
            assert_eq!(status, StatusCode::BAD_REQUEST);
            assert_eq!(error.error, OAuthErrorCode::InvalidClient);
        }
        other => panic!("expected ParRefused, got {other:?}"),
    }
}

#[tokio::test]
async fn a_wrong_pkce_verifier_is_refused() {
    let epj = TestClient::ec("epj");
    let emulator = support::emulator_with(&epj).await;
    let verifier = "a-verifier-of-forty-three-characters-or-more-0123";
    let challenge = support::ath(verifier); // base64url(SHA-256), as S256 wants
    let redirect_uri = "http://127.0.0.1:9/callback";
    let assertion = epj.assertion(&emulator);
    let (status, pushed) = support::post_form(
        &format!("{}/connect/par", emulator.issuer()),
        &[
            ("client_id", "epj"),
            ("client_assertion_type", support::ASSERTION_TYPE),
            ("client_assertion", &assertion),
            ("response_type", "code"),
            ("redirect_uri", redirect_uri),
            ("scope", "openid offline_access"),
            ("state", "s"),
            ("nonce", "n"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{pushed}");
    let request_uri = pushed["request_uri"].as_str().expect("request_uri");
    let authorize = format!(
        "{}/connect/authorize?{}",
        emulator.issuer(),
        form_body(&[("client_id", "epj"), ("request_uri", request_uri)])
    );
    let (_, _, html) = get(&authorize).await;
    let login = login_form_id(&html);
    let request = Request::builder()
        .method(Method::POST)
        .uri(format!("{}/connect/authorize/login", emulator.issuer()))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(form_body(&[
            ("login", login),
            ("pid", TEST_PEOPLE[0].pid),
        ]))))
        .expect("request");
    let (_, headers, _) = send(request).await;
    let location = headers[header::LOCATION].to_str().expect("location");
    let query = location.split_once('?').expect("query").1;
    let code = form_urlencoded::parse(query.as_bytes())
        .find(|(n, _)| n == "code")
        .map(|(_, v)| v.into_owned())
        .expect("code");

    let token_endpoint = emulator.token_endpoint();
    let token = |verifier: &'static str| {
        let assertion = epj.assertion(&emulator);
        let code = code.clone();
        let token_endpoint = token_endpoint.clone();
        async move {
            support::post_form(
                &token_endpoint,
                &[
                    ("grant_type", "authorization_code"),
                    ("client_id", "epj"),
                    ("client_assertion_type", support::ASSERTION_TYPE),
                    ("client_assertion", &assertion),
                    ("code", &code),
                    ("redirect_uri", redirect_uri),
                    ("code_verifier", verifier),
                ],
            )
            .await
        }
    };
    let refused = token("another-verifier-of-forty-three-characters-0123").await;
    support::assert_refused(
        &refused,
        "invalid_grant",
        "code_verifier does not match",
        &[],
    );
    // The code was spent by the failed attempt: the right verifier comes too late.
    let refused = token(verifier).await;
    support::assert_refused(&refused, "invalid_grant", "used already", &[]);
}

#[tokio::test]
async fn a_code_used_twice_is_refused_and_its_tokens_revoked() {
    let (emulator, epj, login) = setup().await;
    let mut pending = login.start(LOGIN_SCOPES).await.expect("PAR");
    let url = pending.authorize_url().to_owned();
    let (code, status) = tokio::join!(
        pending.receive(),
        log_in_at_page(emulator.issuer(), &url, Some(TEST_PEOPLE[0].pid))
    );
    assert_eq!(status, StatusCode::OK);
    let code = code.expect("a code");
    assert!(!format!("{code:?}").contains(code.secret()));
    let first = pending.exchange(&code).await.expect("first exchange");
    match pending.exchange(&code).await {
        Err(e @ Error::OAuth { .. }) => {
            let oauth = e.oauth_error().expect("oauth");
            assert_eq!(oauth.error, OAuthErrorCode::InvalidGrant);
            assert!(e.to_string().contains("used already"), "{e}");
            assert!(!e.to_string().contains(code.secret()));
        }
        other => panic!("expected invalid_grant, got {other:?}"),
    }
    // The refresh token of the first exchange was revoked with the code's reuse.
    let session = RefreshSession::new(
        endpoint(&emulator, &epj),
        first.token_set().expect("set").clone(),
    );
    let error = session.refresh(&[]).await.expect_err("revoked");
    assert!(error.is_login_required(), "{error}");
}

#[tokio::test]
async fn bad_id_tokens_are_refused_naming_the_failed_check() {
    let (emulator, _, login) = setup().await;
    for (fault, check) in [
        (IdTokenFault::WrongNonce, IdTokenCheck::Nonce),
        (IdTokenFault::WrongAudience, IdTokenCheck::Audience),
        (IdTokenFault::WrongIssuer, IdTokenCheck::Issuer),
        (IdTokenFault::Expired, IdTokenCheck::Expiry),
        (IdTokenFault::BadSignature, IdTokenCheck::Signature),
    ] {
        emulator.set_id_token_fault(Some(fault));
        let pending = login.start(LOGIN_SCOPES).await.expect("PAR");
        let result = finish_with(&emulator, pending, Some(TEST_PEOPLE[0].pid)).await;
        match login_error(result) {
            LoginError::IdToken {
                check: got, reason, ..
            } => {
                assert_eq!(got, check, "{fault:?}: {reason}");
            }
            other => panic!("{fault:?}: expected an ID token error, got {other:?}"),
        }
    }
    emulator.set_id_token_fault(None);
    let pending = login.start(LOGIN_SCOPES).await.expect("PAR");
    finish_with(&emulator, pending, Some(TEST_PEOPLE[0].pid))
        .await
        .expect("a sound ID token again");
    assert_eq!(login.jwks_fetches(), 1, "the JWKS is kept between logins");
}

#[tokio::test]
async fn a_hand_made_id_token_is_checked_for_nonce_and_aud() {
    let (emulator, _, login) = setup().await;
    // A token signed by the emulator's own key, but for another nonce and client.
    let now = support::now();
    let mut claims = serde_json::json!({
        "iss": emulator.issuer(), "aud": "epj", "sub": "s", "nonce": "n1",
        "iat": now, "exp": now + 60,
    });
    let token = emulator.sign_access_token(&claims).expect("sign");
    assert!(login.validate_id_token(&token, "n1").await.is_ok());
    let check = |result: helseid::Result<_>| match result {
        Err(Error::Login(LoginError::IdToken { check, .. })) => check,
        other => panic!("expected an ID token error, got {other:?}"),
    };
    assert_eq!(
        check(login.validate_id_token(&token, "n2").await),
        IdTokenCheck::Nonce
    );
    claims["aud"] = "someone-else".into();
    let token = emulator.sign_access_token(&claims).expect("sign");
    assert_eq!(
        check(login.validate_id_token(&token, "n1").await),
        IdTokenCheck::Audience
    );
    assert_eq!(
        check(login.validate_id_token("not.a.jwt", "n1").await),
        IdTokenCheck::Format
    );
}

#[tokio::test]
async fn logout_revokes_the_refresh_token_and_gives_the_browser_the_end_session_url() {
    let (emulator, epj, login) = setup().await;
    let pending = login.start(LOGIN_SCOPES).await.expect("PAR");
    let url = pending.authorize_url().to_owned();
    let finishing = tokio::spawn(pending.finish());
    let (status, cookie) =
        support::log_in_in_browser(emulator.issuer(), &url, Some(TEST_PEOPLE[2].pid)).await;
    assert_eq!(status, StatusCode::OK);
    let cookie = cookie.expect("the browser holds the session");
    let logged_in = finishing.await.expect("task").expect("logged in");
    let set = logged_in.token_set().expect("set").clone();
    let id_token = set.id_token().expect("an ID token").to_owned();
    let logout = login
        .logout_to(&set, "http://127.0.0.1:9/logged-out")
        .await
        .expect("logout");
    assert!(logout.revoked, "{logout:?}");
    let end = logout.end_session.as_ref().expect("an end session URL");
    // The URL is for the browser: the end session endpoint with the ID token as a
    // hint, where to come back, and a fresh state.
    let discovery = support::get_json(&format!(
        "{}/.well-known/openid-configuration",
        emulator.issuer()
    ))
    .await;
    let end_session_endpoint = discovery["end_session_endpoint"]
        .as_str()
        .expect("endpoint");
    let (base, query) = end.url().split_once('?').expect("a query");
    assert_eq!(base, end_session_endpoint);
    let params: std::collections::HashMap<String, String> =
        form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
    assert_eq!(params["id_token_hint"], id_token);
    assert_eq!(
        params["post_logout_redirect_uri"],
        "http://127.0.0.1:9/logged-out"
    );
    assert_eq!(params["state"], end.state());
    assert!(end.state().len() >= 16);
    // Neither the URL nor the ID token reaches Debug.
    let debug = format!("{logout:?}");
    assert!(
        !debug.contains(&id_token) && !debug.contains("id_token_hint"),
        "{debug}"
    );
    // Nothing was ended from here: the session is the browser's to end, and a request
    // without its cookie (a back-channel GET, as logout once made) ends nothing.
    assert_eq!(emulator.ended_sessions(), 0);
    let (status, _, _) = get(end.url()).await;
    assert!(status.is_success() || status.is_redirection(), "{status}");
    assert_eq!(emulator.ended_sessions(), 0, "no cookie, no session ended");
    let status = support::get_in_browser(end.url(), &cookie).await;
    assert!(status.is_success() || status.is_redirection(), "{status}");
    // The refresh token is spent, and the browser's visit ended the session.
    let session = RefreshSession::new(endpoint(&emulator, &epj), set.clone());
    support::assert_logged_out(&emulator, &session).await;
}

#[tokio::test]
async fn a_login_nobody_finishes_times_out() {
    let (_emulator, _, login) = setup().await;
    let login = login.with_timeout(Duration::ZERO);
    let pending = login.start(LOGIN_SCOPES).await.expect("PAR");
    match pending.finish().await {
        Err(Error::Login(LoginError::Timeout { after, .. })) => assert_eq!(after, Duration::ZERO),
        other => panic!("expected a timeout, got {other:?}"),
    }
}
