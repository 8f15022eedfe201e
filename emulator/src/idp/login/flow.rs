//! A login: the pushed authorization request, the login page, the authorization code
//! grant and its ID token, ending a session and revoking its refresh token.

use super::*;
use crate::idp::client_auth::{AuthenticatedClient, authenticate};
use crate::idp::issue::{
    check_granted, client_claims, issue_access_token, split_scopes, token_response,
};
use crate::idp::people::{self};
use crate::idp::state::State;
use crate::server::error::{b64, b64_decode};
use crate::server::form::TokenForm;
use crate::server::response::{TokenError, no_store, quote};
use crate::server::{lock, unix_now};

/// Random bytes, base64url.
fn random(bytes: usize) -> Result<String, TokenError> {
    let mut buf = vec![0u8; bytes];
    aws_lc_rs::rand::fill(&mut buf)
        .map_err(|_| TokenError::server_error("cannot generate random bytes"))?;
    Ok(b64(buf))
}

/// Whether `value` is base64url of a SHA-256 digest (43 characters).
fn is_sha256_b64(value: &str) -> bool {
    value.len() == 43 && b64_decode(value).is_some_and(|v| v.len() == 32)
}

/// Checks a redirect URI: `http` to a loopback address (`127.0.0.1`, `[::1]`,
/// `localhost`) with a port, as a native app's loopback redirect is.
fn check_redirect_uri(uri: &str) -> Result<(), TokenError> {
    let refuse = |why: &str| {
        TokenError::invalid_request(format!(
            "redirect_uri {} {why}: a native app redirects to http://127.0.0.1:<port>/<path>",
            quote(uri)
        ))
    };
    let parsed: axum::http::Uri = uri.parse().map_err(|_| refuse("is not a URI"))?;
    if parsed.scheme_str() != Some("http") {
        return Err(refuse("is not http"));
    }
    if !matches!(parsed.host(), Some("127.0.0.1" | "[::1]" | "localhost")) {
        return Err(refuse("is not a loopback address"));
    }
    if parsed.port_u16().is_none() {
        return Err(refuse("has no port"));
    }
    if uri.contains('#') {
        return Err(refuse("has a fragment"));
    }
    Ok(())
}

/// The scopes a login may ask for: the identity scopes and the client's own; `openid`
/// among them.
fn login_scopes(
    requested: Option<&str>,
    client: &AuthenticatedClient<'_>,
) -> Result<Vec<String>, TokenError> {
    let Some(requested) = requested else {
        return Err(TokenError::invalid_request(
            "scope is missing: a login asks for at least openid",
        ));
    };
    let scopes = split_scopes(requested);
    if !scopes.iter().any(|s| s == "openid") {
        return Err(TokenError::invalid_scope(
            "scope has no openid: a login is an OpenID Connect request",
        ));
    }
    check_granted(&scopes, client.client, is_identity_scope)?;
    Ok(scopes)
}

/// `POST /connect/par`: a pushed authorization request (RFC 9126), authenticated with a
/// client assertion.
pub(crate) async fn par(
    Extract(state): Extract<Arc<State>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match push(&state, &headers, &body) {
        Ok((request_uri, expires_in)) => {
            let body = json!({ "request_uri": request_uri, "expires_in": expires_in });
            no_store((StatusCode::CREATED, axum::Json(body)).into_response())
        }
        Err(error) => {
            tracing::debug!(
                error = error.code(),
                description = error.description(),
                "helseid emulator refused a pushed authorization request"
            );
            error.into_response()
        }
    }
}

fn push(state: &State, headers: &HeaderMap, body: &[u8]) -> Result<(String, i64), TokenError> {
    let form = TokenForm::parse(headers, body)?;
    let client = authenticate(state, &form)?;
    if form.get("request").is_some() {
        return Err(TokenError::invalid_request(
            "request objects (request) are not supported: send the parameters in the form",
        ));
    }
    expect_value(&form, "response_type", "code", "only code is supported")?;
    let required = |name: &str| {
        form.get(name)
            .map(str::to_owned)
            .ok_or_else(|| TokenError::invalid_request(format!("{name} is missing")))
    };
    let redirect_uri = required("redirect_uri")?;
    check_redirect_uri(&redirect_uri)?;
    expect_value(
        &form,
        "code_challenge_method",
        "S256",
        "PKCE with S256 is required",
    )?;
    let code_challenge = required("code_challenge")?;
    if !is_sha256_b64(&code_challenge) {
        return Err(TokenError::invalid_request(
            "code_challenge is not base64url of a SHA-256 digest (43 characters)",
        ));
    }
    let dpop_jkt = form.get("dpop_jkt").map(str::to_owned);
    if dpop_jkt.as_deref().is_some_and(|jkt| !is_sha256_b64(jkt)) {
        return Err(TokenError::invalid_request(
            "dpop_jkt is not an RFC 7638 SHA-256 thumbprint (43 characters of base64url)",
        ));
    }
    let authorization = Authorization {
        client_id: client.client.id.clone(),
        scopes: login_scopes(form.get("scope"), &client)?,
        state: required("state")?,
        nonce: required("nonce")?,
        redirect_uri,
        code_challenge,
        dpop_jkt,
    };
    let request_uri = format!("{REQUEST_URI_PREFIX}{}", random(32)?);
    let now = unix_now();
    let mut inner = lock(&state.login.inner);
    inner
        .pushed
        .retain(|_, pushed| pushed.expires_at.saturating_add(3600) > now);
    inner.pushed.insert(
        request_uri.clone(),
        Pushed {
            authorization,
            expires_at: now.saturating_add(PAR_LIFETIME),
            used: false,
        },
    );
    Ok((request_uri, PAR_LIFETIME))
}

/// Requires parameter `name` to be `expected`; `why` explains the rule.
fn expect_value(form: &TokenForm, name: &str, expected: &str, why: &str) -> Result<(), TokenError> {
    match form.get(name) {
        Some(value) if value == expected => Ok(()),
        Some(other) => Err(TokenError::invalid_request(format!(
            "{name} {} is not accepted: {why}",
            quote(other)
        ))),
        None => Err(TokenError::invalid_request(format!(
            "{name} is missing: {why}"
        ))),
    }
}

/// An HTML page of the emulator's.
fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{title}</title>\
         <style>body{{font-family:sans-serif;max-width:48em;margin:2em auto}}\
         table{{border-collapse:collapse}}td,th{{padding:.3em .8em;text-align:left}}</style>\
         </head><body><h1>{title}</h1>\n{body}\n</body></html>\n",
        title = html_escape(title)
    );
    let mut response = (status, Html(html)).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    response
}

/// An error page: the authorize request cannot be trusted enough to redirect.
fn error_page(what: &str) -> Response {
    page(
        StatusCode::BAD_REQUEST,
        "HelseID emulator: cannot log in",
        &format!("<p id=\"error\">{}</p>", html_escape(what)),
    )
}

/// `text` for HTML content or an attribute.
fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A redirect (303) to the client's redirect URI with these parameters.
fn redirect(redirect_uri: &str, params: &[(&str, &str)]) -> Response {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (name, value) in params {
        query.append_pair(name, value);
    }
    let separator = if redirect_uri.contains('?') { '&' } else { '?' };
    let location = format!("{redirect_uri}{separator}{}", query.finish());
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = axum::http::HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// `GET /connect/authorize?client_id=..&request_uri=..`: shows the login page for a
/// pushed request, once, before it expires.
pub(crate) async fn authorize(
    Extract(state): Extract<Arc<State>>,
    RawQuery(query): RawQuery,
) -> Response {
    let mut client_id = None;
    let mut request_uri = None;
    for (name, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match name.as_ref() {
            "client_id" if client_id.is_none() => client_id = Some(value.into_owned()),
            "request_uri" if request_uri.is_none() => request_uri = Some(value.into_owned()),
            other => {
                return error_page(&format!(
                    "parameter {} is not accepted here: HelseID requires pushed authorization \
                     requests, so the authorize request has only client_id and request_uri, once each",
                    quote(other)
                ));
            }
        }
    }
    let Some(request_uri) = request_uri else {
        return error_page(
            "request_uri is missing: push the authorization request to /connect/par first",
        );
    };
    let now = unix_now();
    let mut inner = lock(&state.login.inner);
    let Some(pushed) = inner.pushed.get_mut(&request_uri) else {
        return error_page("request_uri is unknown: this emulator did not issue it");
    };
    if client_id.as_deref() != Some(pushed.authorization.client_id.as_str()) {
        return error_page("client_id is missing or is not the client that pushed the request");
    }
    let authorization = pushed.authorization.clone();
    let refused = if pushed.used {
        Some("the request_uri has been used already: push a new authorization request")
    } else if pushed.expires_at <= now {
        Some("the request_uri has expired: push a new authorization request")
    } else {
        None
    };
    pushed.used = true;
    if let Some(description) = refused {
        return redirect(
            &authorization.redirect_uri,
            &[
                ("error", "invalid_request_uri"),
                ("error_description", description),
                ("state", &authorization.state),
                ("iss", &state.issuer),
            ],
        );
    }
    let Ok(login) = random(32) else {
        return error_page("cannot generate a login id");
    };
    let client = authorization.client_id.clone();
    inner.pending.insert(login.clone(), authorization);
    drop(inner);
    login_page(&client, &login)
}

/// The login page: a form with a button per test person, and one to cancel.
fn login_page(client_id: &str, login: &str) -> Response {
    let mut rows = String::new();
    for person in &people::TEST_PEOPLE {
        let _ = writeln!(
            rows,
            "<tr><td>{name}</td><td>{pid}</td><td>{hpr}</td><td>{level}</td>\
             <td><button type=\"submit\" name=\"pid\" value=\"{pid}\" id=\"person-{pid}\">\
             Log in as {name}</button></td></tr>",
            name = html_escape(&person.name()),
            pid = person.pid,
            hpr = person.hpr_number,
            level = person.security_level(),
        );
    }
    let body = format!(
        "<p>The client <code id=\"client\">{client}</code> asks you to log in. Pick a test person \
         (a login through ID-porten, security level 4).</p>\n\
         <form method=\"post\" action=\"{LOGIN_FORM_PATH}\">\n\
         <input type=\"hidden\" name=\"login\" value=\"{login}\">\n\
         <table><tr><th>Name</th><th>National identity number</th><th>HPR number</th>\
         <th>Security level</th><th></th></tr>\n{rows}</table>\n\
         <p><button type=\"submit\" name=\"cancel\" value=\"1\" id=\"cancel\">Cancel</button></p>\n\
         </form>",
        client = html_escape(client_id),
        login = html_escape(login),
    );
    page(StatusCode::OK, "HelseID emulator: log in", &body)
}

/// `POST /connect/authorize/login`: the login page's form. Redirects to the client with
/// a code, or with `error=access_denied` when the tester cancelled.
pub(crate) async fn login(Extract(state): Extract<Arc<State>>, body: Bytes) -> Response {
    let mut login = None;
    let mut pid = None;
    let mut cancel = false;
    for (name, value) in form_urlencoded::parse(&body) {
        match name.as_ref() {
            "login" => login = Some(value.into_owned()),
            "pid" => pid = Some(value.into_owned()),
            "cancel" => cancel = true,
            _ => {}
        }
    }
    let Some(authorization) = login.and_then(|id| lock(&state.login.inner).pending.remove(&id))
    else {
        return error_page("this login is unknown or finished already: start the login again");
    };
    let params = |extra: &[(&'static str, String)]| {
        let mut params: Vec<(&str, String)> = extra.to_vec();
        params.push(("state", authorization.state.clone()));
        params.push(("iss", state.issuer.clone()));
        params
    };
    if cancel {
        let params = params(&[
            ("error", "access_denied".to_owned()),
            (
                "error_description",
                "the user cancelled the login".to_owned(),
            ),
        ]);
        let borrowed: Vec<(&str, &str)> = params.iter().map(|(n, v)| (*n, v.as_str())).collect();
        return redirect(&authorization.redirect_uri, &borrowed);
    }
    let Some(person) = pid.as_deref().and_then(people::find) else {
        return error_page("pick one of the test people");
    };
    let (Ok(code), Ok(sid)) = (random(32), random(16)) else {
        return error_page("cannot generate a code");
    };
    let redirect_uri = authorization.redirect_uri.clone();
    let params = params(&[("code", code.clone())]);
    {
        let now = unix_now();
        let mut inner = lock(&state.login.inner);
        inner
            .codes
            .retain(|_, code| code.expires_at.saturating_add(3600) > now);
        inner.sessions.insert(sid.clone(), false);
        inner.codes.insert(
            code,
            Code {
                authorization,
                person,
                sid: sid.clone(),
                expires_at: now.saturating_add(CODE_LIFETIME),
                used: false,
                refresh_token: None,
            },
        );
    }
    state.login.logins.fetch_add(1, Ordering::Relaxed);
    let borrowed: Vec<(&str, &str)> = params.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let mut response = redirect(&redirect_uri, &borrowed);
    // The session lives in the browser, as HelseID's does: only a request that carries
    // this cookie can end it (see `end_session`).
    if let Ok(cookie) = axum::http::HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={sid}; Path=/connect; HttpOnly; SameSite=Lax"
    )) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

/// The cookie that holds a browser's session at the emulator.
pub(crate) const SESSION_COOKIE: &str = "helseid_emulator_session";

/// The session id in the request's `helseid_emulator_session` cookie, if any.
fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value)
}

/// The `authorization_code` grant, for a client that has authenticated, with a DPoP
/// proof by the key `jkt` or none.
pub(crate) fn authorization_code(
    state: &State,
    form: &TokenForm,
    client: &AuthenticatedClient<'_>,
    jkt: Option<&str>,
) -> Result<Response, TokenError> {
    let Some(code) = form.get("code") else {
        return Err(TokenError::invalid_request("code is missing"));
    };
    let now = unix_now();
    let mut inner = lock(&state.login.inner);
    let Some(entry) = inner.codes.get_mut(code) else {
        return Err(TokenError::invalid_grant(
            "the code is unknown: this emulator did not issue it",
        ));
    };
    if entry.authorization.client_id != client.client.id {
        return Err(TokenError::invalid_grant(format!(
            "the code was not issued to client {}",
            quote(&client.client.id)
        )));
    }
    if entry.used {
        let revoked = entry.refresh_token.take();
        drop(inner);
        if let Some(refresh_token) = revoked {
            state.refresh_tokens.revoke(&refresh_token);
        }
        return Err(TokenError::invalid_grant(
            "the code has been used already: a code is redeemed once; the tokens of its first \
             redemption are revoked",
        ));
    }
    // Spent whatever happens next.
    entry.used = true;
    if entry.expires_at <= now {
        return Err(TokenError::invalid_grant(format!(
            "the code expired {} s ago",
            now.saturating_sub(entry.expires_at)
        )));
    }
    if form.get("redirect_uri") != Some(entry.authorization.redirect_uri.as_str()) {
        return Err(TokenError::invalid_grant(
            "redirect_uri is missing or is not the one of the authorization request",
        ));
    }
    let Some(verifier) = form.get("code_verifier") else {
        return Err(TokenError::invalid_grant(
            "code_verifier is missing: the authorization request used PKCE",
        ));
    };
    if !(43..=128).contains(&verifier.len())
        || !verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
    {
        return Err(TokenError::invalid_grant(
            "code_verifier is not 43 to 128 unreserved characters (RFC 7636)",
        ));
    }
    let challenge = b64(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        verifier.as_bytes(),
    ));
    if challenge != entry.authorization.code_challenge {
        return Err(TokenError::invalid_grant(
            "code_verifier does not match the code_challenge (S256) of the authorization request",
        ));
    }
    match (entry.authorization.dpop_jkt.as_deref(), jkt) {
        (Some(_), None) => {
            return Err(TokenError::invalid_grant(
                "the authorization request named a dpop_jkt: the token request needs a DPoP proof \
                 signed by that key",
            ));
        }
        (Some(expected), Some(jkt)) if expected != jkt => {
            return Err(TokenError::invalid_grant(
                "the DPoP proof's key is not the dpop_jkt of the authorization request",
            ));
        }
        _ => {}
    }
    let authorization = entry.authorization.clone();
    let person = entry.person;
    let sid = entry.sid.clone();
    drop(inner);

    let mut user = person.claims();
    user.insert("sid".into(), json!(sid));
    let mut identity = client_claims(client.client, &client.organisation);
    identity.extend(user.clone());
    let issued = issue_access_token(state, identity, &authorization.scopes, &[], None, jkt)?;
    let id_token = id_token(state, &authorization, &user)?;
    let mut body = issued.response_body();
    if let Value::Object(map) = &mut body {
        map.insert("id_token".into(), json!(id_token));
    }
    if authorization.scopes.iter().any(|s| s == "offline_access") {
        let refresh = state.refresh_tokens.start(crate::idp::refresh::Session {
            client_id: client.client.id.clone(),
            scopes: authorization.scopes.clone(),
            organisation: client.organisation.clone(),
            user,
            jkt: jkt.map(str::to_owned),
        })?;
        if let Some(entry) = lock(&state.login.inner).codes.get_mut(code) {
            entry.refresh_token = Some(refresh.refresh_token.clone());
        }
        if let Value::Object(map) = &mut body {
            map.insert("refresh_token".into(), json!(refresh.refresh_token));
            map.insert("rt_expires_in".into(), json!(refresh.rt_expires_in));
        }
    }
    Ok(token_response(body))
}

/// Signs the ID token of a login, with the fault a test set.
fn id_token(
    state: &State,
    authorization: &Authorization,
    user: &Map<String, Value>,
) -> Result<String, TokenError> {
    let now = unix_now();
    let mut claims = user.clone();
    for (name, value) in [
        ("iss", json!(state.issuer)),
        ("aud", json!(authorization.client_id)),
        ("iat", json!(now)),
        ("nbf", json!(now)),
        ("exp", json!(now.saturating_add(ID_TOKEN_LIFETIME))),
        ("nonce", json!(authorization.nonce)),
        ("jti", json!(random(16)?)),
    ] {
        claims.insert(name.into(), value);
    }
    let fault = *lock(&state.login.fault);
    match fault {
        Some(IdTokenFault::WrongNonce) => {
            claims.insert("nonce".into(), json!("not-the-nonce-of-the-request"));
        }
        Some(IdTokenFault::WrongAudience) => {
            claims.insert("aud".into(), json!("another-client"));
        }
        Some(IdTokenFault::WrongIssuer) => {
            claims.insert("iss".into(), json!("https://helseid-sts.example"));
        }
        Some(IdTokenFault::Expired) => {
            claims.insert("iat".into(), json!(now.saturating_sub(3900)));
            claims.insert("exp".into(), json!(now.saturating_sub(3600)));
        }
        Some(IdTokenFault::BadSignature) | None => {}
    }
    let signed = state
        .signing_keys
        .sign("JWT", &claims)
        .ok_or_else(|| TokenError::server_error("cannot sign the ID token"))?;
    if fault == Some(IdTokenFault::BadSignature) {
        // The signature of other content: the payload changes, the signature stays.
        let mut parts: Vec<&str> = signed.split('.').collect();
        claims.insert("name".into(), json!("Mallory"));
        let payload = b64(serde_json::to_vec(&claims).unwrap_or_default());
        if let Some(part) = parts.get_mut(1) {
            *part = &payload;
        }
        return Ok(parts.join("."));
    }
    Ok(signed)
}

/// The claims of an ID token this emulator signed (its signature and `iss` checked; an
/// expired one is accepted, as an `id_token_hint` may be).
fn verify_id_token_hint(state: &State, token: &str) -> Option<Map<String, Value>> {
    let kid = jsonwebtoken::decode_header(token).ok()?.kid?;
    let key = state.signing_keys.find(&kid)?;
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.set_required_spec_claims(&["iss"]);
    validation.set_issuer(&[&state.issuer]);
    jsonwebtoken::decode::<Map<String, Value>>(token, &key.decoding, &validation)
        .ok()
        .map(|data| data.claims)
}

/// `GET /connect/endsession?id_token_hint=..&post_logout_redirect_uri=..&state=..`:
/// ends the session the ID token names when the request comes from the browser that
/// holds it (its session cookie), as HelseID does: a request from elsewhere (a
/// back-channel GET carries no cookie) ends nothing. Then redirects to a loopback
/// `post_logout_redirect_uri` (or shows a page).
pub(crate) async fn end_session(
    Extract(state): Extract<Arc<State>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let mut hint = None;
    let mut post_logout = None;
    let mut client_state = None;
    for (name, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match name.as_ref() {
            "id_token_hint" => hint = Some(value.into_owned()),
            "post_logout_redirect_uri" => post_logout = Some(value.into_owned()),
            "state" => client_state = Some(value.into_owned()),
            _ => {}
        }
    }
    let Some(claims) = hint
        .as_deref()
        .and_then(|t| verify_id_token_hint(&state, t))
    else {
        return error_page(
            "id_token_hint is missing or is not an ID token of this emulator: cannot tell whose \
             session to end",
        );
    };
    if let Some(sid) = claims.get("sid").and_then(Value::as_str)
        && session_cookie(&headers) == Some(sid)
        && let Some(ended) = lock(&state.login.inner).sessions.get_mut(sid)
        && !*ended
    {
        *ended = true;
        state.login.ended_sessions.fetch_add(1, Ordering::Relaxed);
    }
    match post_logout {
        Some(uri) if check_redirect_uri(&uri).is_ok() => {
            let params: Vec<(&str, &str)> = client_state
                .as_deref()
                .map(|s| ("state", s))
                .into_iter()
                .collect();
            redirect(&uri, &params)
        }
        Some(_) => error_page("post_logout_redirect_uri is not a loopback http URI"),
        None => page(
            StatusCode::OK,
            "HelseID emulator: logged out",
            "<p id=\"logged-out\">You are logged out. You may close this window.</p>",
        ),
    }
}

/// `POST /connect/revocation` (RFC 7009): revokes a refresh token (its whole session)
/// for the client it was issued to. Access tokens are JWTs the emulator does not track:
/// their revocation is answered 200 as well.
pub(crate) async fn revocation(
    Extract(state): Extract<Arc<State>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = TokenForm::parse(&headers, &body).and_then(|form| {
        let client = authenticate(&state, &form)?;
        let Some(token) = form.get("token") else {
            return Err(TokenError::invalid_request("token is missing"));
        };
        if state
            .refresh_tokens
            .issued_to(token)
            .is_some_and(|owner| owner == client.client.id)
        {
            state.refresh_tokens.revoke(token);
        }
        state.login.revocations.fetch_add(1, Ordering::Relaxed);
        Ok(StatusCode::OK.into_response())
    });
    result.unwrap_or_else(IntoResponse::into_response)
}
