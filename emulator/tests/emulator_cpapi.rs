//! The emulator's CommunicationParty API v2: the sequenced event feed, parties and the
//! export over the seeded register, behind DPoP-bound tokens and proofs built by hand.
//! Everything goes over real HTTP on 127.0.0.1 with real signatures.

#[path = "../../tests/support/mod.rs"]
mod support;

use std::collections::{BTreeSet, HashSet};

use http::{StatusCode, header};
use serde_json::{Value, json};

use helseid::key::SigningKey;
use helseid_emulator::{self as emulator, Emulator};
use support::*;

const ALGS: &str = "RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 ES512";

/// The description of a `use_dpop_nonce` answer.
const NONCE_NEEDED: &str = "a fresh DPoP nonce is required";

/// A client that may ask for both CommunicationParty scopes, at an emulator.
async fn emulator_with_nonce(require_nonce: bool) -> (Emulator, TestClient) {
    let client = TestClient::ec("cpapi-client");
    let emulator = Emulator::builder()
        .client(client.registration(&[CPAPI_SCOPE, CP_SCOPE]))
        .cpapi_require_nonce(require_nonce)
        .start()
        .await
        .expect("emulator starts");
    (emulator, client)
}

/// An emulator, the DPoP key, and a token for the v2 scope bound to that key.
async fn cpapi() -> (Emulator, SigningKey, String) {
    let (emulator, client) = emulator_with_nonce(false).await;
    let key = dpop_key();
    let token = dpop_access_token(&emulator, &client, &key, CPAPI_SCOPE).await;
    (emulator, key, token)
}

/// A proof for `GET` at the path (query and fragment cut off), with `ath` for the token.
fn api_proof(emulator: &Emulator, key: &SigningKey, token: &str, path: &str) -> String {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let mut claims = proof_claims("GET", &format!("{}{path}", emulator.cpapi_base_url()), None);
    claims["ath"] = json!(ath(token));
    sign_proof(key, &claims)
}

/// GETs a v2 path with the token and a proof; returns status, headers and body.
async fn get_v2(
    emulator: &Emulator,
    key: &SigningKey,
    token: &str,
    path: &str,
) -> (StatusCode, http::HeaderMap, Value) {
    let proof = api_proof(emulator, key, token, path);
    get_with_proof(
        &format!("{}{path}", emulator.cpapi_base_url()),
        Some(&format!("DPoP {token}")),
        Some(&proof),
    )
    .await
}

/// GETs a v2 path; asserts 200 JSON and returns the body.
async fn get_ok(emulator: &Emulator, key: &SigningKey, token: &str, path: &str) -> Value {
    let (status, headers, body) = get_v2(emulator, key, token, path).await;
    assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    body
}

/// The keys of a JSON object.
fn keys(value: &Value) -> BTreeSet<&str> {
    value
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect()
}

/// Whether a date-time is written as .NET writes a `DateTimeOffset`: with an offset and
/// at most seven fractional digits.
fn is_dotnet_with_offset(written: &str) -> bool {
    let fraction = written.split_once('.').map_or(0, |(_, rest)| {
        rest.bytes().take_while(u8::is_ascii_digit).count()
    });
    chrono::DateTime::parse_from_rfc3339(written).is_ok() && fraction <= 7
}

#[tokio::test]
async fn the_feed_holds_the_cpe_events_with_sequence_numbers() {
    let (emulator, key, token) = cpapi().await;
    let all = get_ok(&emulator, &key, &token, "/api/v1/event").await;
    assert_eq!(keys(&all), BTreeSet::from(["count", "results"]));
    let events = all["results"].as_array().expect("results");
    assert_eq!(all["count"], 487);
    assert_eq!(events.len(), 487);
    assert_eq!(emulator.cpapi_events(), 487);
    for (index, event) in events.iter().enumerate() {
        assert_eq!(
            keys(event),
            BTreeSet::from(["eventTimestamp", "eventType", "herId", "sequenceNumber"])
        );
        assert_eq!(event["sequenceNumber"], index as i64 + 1);
        assert!(event["herId"].is_i64());
        let timestamp = event["eventTimestamp"].as_str().expect("eventTimestamp");
        assert!(is_dotnet_with_offset(timestamp), "{timestamp}");
    }
    let created = events
        .iter()
        .filter(|e| e["eventType"] == "CommunicationPartyCreated")
        .count();
    let updated = events
        .iter()
        .filter(|e| e["eventType"] == "CommunicationPartyUpdated")
        .count();
    assert_eq!((created, updated), (300, 187));

    // The same feed as CPE's, in the same order.
    let page = get_ok(
        &emulator,
        &key,
        &token,
        "/api/v1/event?fromSequenceNumber=480&maxEvents=5",
    )
    .await;
    let numbers: Vec<i64> = page["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|e| e["sequenceNumber"].as_i64().expect("number"))
        .collect();
    assert_eq!(numbers, [480, 481, 482, 483, 484]);
    assert_eq!(page["count"], 5);
    assert_eq!(page["results"][0], events[479]);

    let tail = get_ok(
        &emulator,
        &key,
        &token,
        "/api/v1/event?maxEvents=1000&fromSequenceNumber=486",
    )
    .await;
    assert_eq!(tail["count"], 2);
    let past = get_ok(
        &emulator,
        &key,
        &token,
        "/api/v1/event?fromSequenceNumber=488",
    )
    .await;
    assert_eq!(past, json!({"results": [], "count": 0}));
    let far = get_ok(
        &emulator,
        &key,
        &token,
        "/api/v1/event?fromSequenceNumber=2147483647",
    )
    .await;
    assert_eq!(far["count"], 0);

    let latest = get_ok(&emulator, &key, &token, "/api/v1/event/latest").await;
    assert_eq!(latest, events[486]);
    assert_eq!(latest["sequenceNumber"], 487);

    // HEAD is answered as GET, with a proof for HEAD.
    let url = format!("{}/api/v1/event/latest", emulator.cpapi_base_url());
    let mut claims = proof_claims("HEAD", &url, None);
    claims["ath"] = json!(ath(&token));
    let request = http::Request::builder()
        .method(http::Method::HEAD)
        .uri(&url)
        .header(header::AUTHORIZATION, format!("DPoP {token}"))
        .header(DPOP, sign_proof(&key, &claims))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .expect("request");
    let (status, _, body) = send(request).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.is_empty());
}

#[tokio::test]
async fn the_feed_matches_cpe_and_follows_published_updates() {
    let (emulator, client) = emulator_with_nonce(false).await;
    let key = dpop_key();
    let token = dpop_access_token(&emulator, &client, &key, CPAPI_SCOPE).await;
    let bearer = access_token(&emulator, &client).await;

    // CPE's feed, page by page, against v2's.
    let mut cpe_her_ids = Vec::new();
    let mut next = Some("/CommunicationPartyEvents".to_owned());
    while let Some(href) = next {
        let (status, _, page) =
            get_bearer(&format!("{}{href}", emulator.cpe_base_url()), &bearer).await;
        assert_eq!(status, StatusCode::OK);
        for event in page["CommunicationParties"].as_array().expect("events") {
            cpe_her_ids.push(event["HerId"].clone());
        }
        next = page["Links"]["Next"]["Href"].as_str().map(str::to_owned);
    }
    let v2 = get_ok(&emulator, &key, &token, "/api/v1/event").await;
    let v2_her_ids: Vec<Value> = v2["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|e| e["herId"].clone())
        .collect();
    assert_eq!(v2_her_ids, cpe_her_ids);

    let her_id = cpe_her_ids[10].as_i64().expect("herId") as i32;
    emulator.publish_cpe_update(her_id).expect("known party");
    assert_eq!(emulator.cpapi_events(), 488);
    let news = get_ok(
        &emulator,
        &key,
        &token,
        "/api/v1/event?fromSequenceNumber=488",
    )
    .await;
    assert_eq!(news["count"], 1);
    let event = &news["results"][0];
    assert_eq!(event["sequenceNumber"], 488);
    assert_eq!(event["herId"], her_id);
    assert_eq!(event["eventType"], "CommunicationPartyUpdated");
    let latest = get_ok(&emulator, &key, &token, "/api/v1/event/latest").await;
    assert_eq!(&latest, event);
    let export = get_ok(&emulator, &key, &token, "/api/v1/communicationparty/export").await;
    assert_eq!(export["lastSequenceNumber"], 488);
}

#[tokio::test]
async fn parties_and_the_export() {
    let (emulator, key, token) = cpapi().await;
    let active = get_ok(&emulator, &key, &token, "/api/v1/communicationparty/export").await;
    assert_eq!(
        keys(&active),
        BTreeSet::from(["communicationParties", "count", "lastSequenceNumber"])
    );
    assert_eq!(active["lastSequenceNumber"], 487);
    let active_ids: Vec<i64> = active["communicationParties"]
        .as_array()
        .expect("herIds")
        .iter()
        .map(|id| id.as_i64().expect("int"))
        .collect();
    assert_eq!(active["count"], active_ids.len());
    let all = get_ok(
        &emulator,
        &key,
        &token,
        "/api/v1/communicationparty/export?includeDeactivated=true",
    )
    .await;
    assert_eq!(all["count"], 300);
    assert!(active_ids.len() < 300, "some parties are deactivated");
    let explicit = get_ok(
        &emulator,
        &key,
        &token,
        "/api/v1/communicationparty/export?includeDeactivated=false",
    )
    .await;
    assert_eq!(explicit, active);

    let all_ids: Vec<i64> = all["communicationParties"]
        .as_array()
        .expect("herIds")
        .iter()
        .map(|id| id.as_i64().expect("int"))
        .collect();
    assert_eq!(all_ids.iter().collect::<HashSet<_>>().len(), 300);
    let active_set: HashSet<i64> = active_ids.iter().copied().collect();

    let first = get_ok(
        &emulator,
        &key,
        &token,
        &format!("/api/v1/communicationparty/{}", all_ids[0]),
    )
    .await;
    // NHN's full model; validTo is left out while the party has no end.
    assert_eq!(
        keys(&first),
        BTreeSet::from([
            "amqpAddress",
            "amqpTransportStatus",
            "currentEncryptionCertificate",
            "currentSigningCertificate",
            "displayName",
            "ediAddress",
            "email",
            "faxNumber",
            "fhirAddress",
            "herId",
            "homepageUrl",
            "name",
            "organizationDetails",
            "phoneNumber",
            "postalAddress",
            "type",
            "validFrom",
        ])
    );
    assert_eq!(first["herId"], all_ids[0]);
    assert_eq!(first["name"], "Oslo universitetssykehus HF");
    assert_eq!(first["type"], "Organization");
    let details = &first["organizationDetails"];
    let number = details["organizationNumber"].as_str().expect("a string");
    assert!(number.len() == 9 && number.bytes().all(|b| b.is_ascii_digit()));
    assert_eq!(details["businessType"]["name"], "Helseforetak");
    assert!(!details["services"].as_array().expect("services").is_empty());
    let postal_code = first["postalAddress"]["postalCode"].as_str().expect("code");
    assert_eq!(postal_code.len(), 4);
    assert!(first["ediAddress"].is_string());
    assert!(is_dotnet_with_offset(
        first["validFrom"].as_str().expect("validFrom")
    ));

    // Every party: its type, and validTo null exactly for the active ones (or in the
    // future).
    let mut kinds = BTreeSet::new();
    for her_id in all_ids.iter().step_by(7) {
        let party = get_ok(
            &emulator,
            &key,
            &token,
            &format!("/api/v1/communicationparty/{her_id}"),
        )
        .await;
        kinds.insert(party["type"].as_str().expect("type").to_owned());
        if party.get("validTo").is_none() {
            assert!(active_set.contains(her_id), "{party}");
        } else {
            assert!(is_dotnet_with_offset(
                party["validTo"].as_str().expect("validTo")
            ));
        }
        if party["type"] == "Person" {
            assert!(party.get("organizationDetails").is_none());
            let details = &party["personDetails"];
            assert!(
                details["hprNumber"]
                    .as_i64()
                    .is_some_and(|n| n >= 1_000_000)
            );
            assert!(details["parentOrganization"]["herId"].is_i64());
            assert_eq!(party["amqpTransportStatus"], "Inherited");
            assert!(
                party["displayName"]
                    .as_str()
                    .expect("displayName")
                    .contains(", ")
            );
        }
    }
    assert_eq!(
        kinds,
        BTreeSet::from(["Organization".into(), "Person".into(), "Service".into()])
    );
}

/// Asserts a ProblemDetails answer whose detail contains `fragment`.
#[track_caller]
fn assert_problem(
    result: &(StatusCode, http::HeaderMap, Value),
    status: StatusCode,
    fragment: &str,
) {
    support::assert_problem(result, "application/problem+json", status, fragment);
}

#[tokio::test]
async fn bad_parameters_get_problem_details() {
    let (emulator, key, token) = cpapi().await;
    for (path, status, fragment) in [
        (
            "/api/v1/event?fromSequenceNumber=0",
            StatusCode::BAD_REQUEST,
            "fromSequenceNumber 0 is out of range: it must be from 1 to 2147483647",
        ),
        (
            "/api/v1/event?fromSequenceNumber=2147483648",
            StatusCode::BAD_REQUEST,
            "fromSequenceNumber 2147483648 is out of range: it must be from 1 to 2147483647",
        ),
        (
            "/api/v1/event?fromSequenceNumber=-1",
            StatusCode::BAD_REQUEST,
            "fromSequenceNumber -1 is out of range",
        ),
        (
            "/api/v1/event?fromSequenceNumber=abc",
            StatusCode::BAD_REQUEST,
            "fromSequenceNumber `abc` is not a whole number: a 64-bit integer is expected",
        ),
        (
            "/api/v1/event?fromSequenceNumber=99999999999999999999",
            StatusCode::BAD_REQUEST,
            "is out of range",
        ),
        (
            "/api/v1/event?fromSequenceNumber=",
            StatusCode::BAD_REQUEST,
            "the query parameter fromSequenceNumber is empty",
        ),
        (
            "/api/v1/event?maxEvents=0",
            StatusCode::BAD_REQUEST,
            "maxEvents 0 is out of range: it must be from 1 to 1000",
        ),
        (
            "/api/v1/event?maxEvents=1001",
            StatusCode::BAD_REQUEST,
            "maxEvents 1001 is out of range",
        ),
        (
            "/api/v1/event?maxEvents=1.5",
            StatusCode::BAD_REQUEST,
            "a 32-bit integer is expected",
        ),
        (
            "/api/v1/event?maxEvents=5&maxEvents=6",
            StatusCode::BAD_REQUEST,
            "the query parameter maxEvents is given more than once",
        ),
        (
            "/api/v1/event?FromSequenceNumber=2",
            StatusCode::BAD_REQUEST,
            "the query parameter `FromSequenceNumber` must be spelled fromSequenceNumber",
        ),
        (
            "/api/v1/event?pageSize=2",
            StatusCode::BAD_REQUEST,
            "unknown query parameter `pageSize`: /api/v1/event takes fromSequenceNumber and maxEvents",
        ),
        (
            "/api/v1/event/latest?x=1",
            StatusCode::BAD_REQUEST,
            "/api/v1/event/latest takes no query parameters",
        ),
        (
            "/api/v1/communicationparty/export?includeDeactivated=yes",
            StatusCode::BAD_REQUEST,
            "includeDeactivated `yes` is not a boolean: use true or false",
        ),
        (
            "/api/v1/communicationparty/export?includedeactivated=true",
            StatusCode::BAD_REQUEST,
            "must be spelled includeDeactivated",
        ),
        (
            "/api/v1/communicationparty/abc",
            StatusCode::BAD_REQUEST,
            "herId `abc` is not a HER-id: a 32-bit integer is expected",
        ),
        (
            "/api/v1/communicationparty/2147483648",
            StatusCode::BAD_REQUEST,
            "a 32-bit integer is expected",
        ),
        (
            "/api/v1/communicationparty/1",
            StatusCode::NOT_FOUND,
            "no communication party has herId 1",
        ),
    ] {
        let result = get_v2(&emulator, &key, &token, path).await;
        assert_problem(&result, status, fragment);
        assert_eq!(
            result.2["instance"],
            path.split('?').next().unwrap_or_default()
        );
    }
}

/// The `WWW-Authenticate` challenge of the API's verifier (`helseid::verify`'s fixed
/// texts) for an error and a description; without an error, the bare challenge.
fn challenge(error: &str, description: &str) -> String {
    if error.is_empty() {
        format!("DPoP algs=\"{ALGS}\"")
    } else {
        format!("DPoP algs=\"{ALGS}\", error=\"{error}\", error_description=\"{description}\"")
    }
}

/// Sends the request; asserts 401, the exact challenge, an empty body, and no secret
/// in the challenge.
async fn assert_unauthorized(
    emulator: &Emulator,
    path: &str,
    authorization: Option<&str>,
    proof: Option<&str>,
    error: &str,
    description: &str,
) -> http::HeaderMap {
    assert_refused(
        emulator,
        path,
        authorization,
        proof,
        StatusCode::UNAUTHORIZED,
        error,
        description,
    )
    .await
}

/// Sends the request; asserts the status, the one exact challenge, an empty body, and
/// no secret in the challenge.
async fn assert_refused(
    emulator: &Emulator,
    path: &str,
    authorization: Option<&str>,
    proof: Option<&str>,
    expected: StatusCode,
    error: &str,
    description: &str,
) -> http::HeaderMap {
    let url = format!("{}{path}", emulator.cpapi_base_url());
    let (status, headers, body) = get_with_proof(&url, authorization, proof).await;
    assert_eq!(status, expected, "{path}: {description}: {body}");
    assert_eq!(headers.get_all(header::WWW_AUTHENTICATE).iter().count(), 1);
    let www_authenticate = headers[header::WWW_AUTHENTICATE].to_str().expect("ASCII");
    assert_eq!(www_authenticate, challenge(error, description), "{path}");
    assert_eq!(body, Value::Null);
    assert_quotes_no_secret(
        www_authenticate,
        &[authorization.unwrap_or_default(), proof.unwrap_or_default()],
    );
    headers
}

#[tokio::test]
async fn tokens_and_proofs_are_checked() {
    let (emulator, client) = emulator_with_nonce(false).await;
    let key = dpop_key();
    let token = dpop_access_token(&emulator, &client, &key, CPAPI_SCOPE).await;
    let path = "/api/v1/event/latest";
    let url = format!("{}{path}", emulator.cpapi_base_url());
    let dpop = format!("DPoP {token}");
    let claims = |edit: &dyn Fn(&mut Value)| {
        let mut claims = proof_claims("GET", &url, None);
        claims["ath"] = json!(ath(&token));
        edit(&mut claims);
        claims
    };
    let proof = |edit: &dyn Fn(&mut Value)| sign_proof(&key, &claims(edit));

    // The token: none, and Bearer, get the challenge alone (RFC 6750 3.1); both
    // schemes at once are a bad request.
    assert_unauthorized(&emulator, path, None, None, "", "").await;
    let bearer = format!("Bearer {token}");
    assert_refused(
        &emulator,
        path,
        Some(&bearer),
        Some(&proof(&|_| {})),
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "a Bearer token with a DPoP proof",
    )
    .await;
    assert_unauthorized(&emulator, path, Some(&bearer), None, "", "").await;
    let unbound = access_token(&emulator, &client).await;
    let unbound_proof = {
        let mut claims = claims(&|_| {});
        claims["ath"] = json!(ath(&unbound));
        sign_proof(&key, &claims)
    };
    assert_unauthorized(
        &emulator,
        path,
        Some(&format!("DPoP {unbound}")),
        Some(&unbound_proof),
        "invalid_token",
        "the token is not DPoP-bound",
    )
    .await;
    let v1_only = dpop_access_token(&emulator, &client, &key, CP_SCOPE).await;
    let v1_proof = {
        let mut claims = claims(&|_| {});
        claims["ath"] = json!(ath(&v1_only));
        sign_proof(&key, &claims)
    };
    // A good token and proof without the scope: 403, as cpapi.json documents.
    let (status, headers, body) =
        get_with_proof(&url, Some(&format!("DPoP {v1_only}")), Some(&v1_proof)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(
        headers[header::WWW_AUTHENTICATE],
        format!(
            "{}, scope=\"{CPAPI_SCOPE}\"",
            challenge(
                "insufficient_scope",
                "the token has none of the scopes this API requires"
            )
        )
        .as_str()
    );
    assert_unauthorized(
        &emulator,
        path,
        Some("DPoP not-a-jwt"),
        Some(&proof(&|_| {})),
        "invalid_token",
        "the token is not a compact JWS",
    )
    .await;

    // The proof.
    let bad_proof = |proof: String, description: &'static str| {
        let emulator = &emulator;
        let dpop = dpop.clone();
        async move {
            assert_unauthorized(
                emulator,
                path,
                Some(&dpop),
                Some(&proof),
                "invalid_dpop_proof",
                description,
            )
            .await;
        }
    };
    assert_unauthorized(
        &emulator,
        path,
        Some(&dpop),
        None,
        "invalid_dpop_proof",
        "no DPoP proof",
    )
    .await;
    let other_path = format!("{}/api/v1/event", emulator.cpapi_base_url());
    let wrong_uri = "the DPoP proof's htu is not the request's URI";
    bad_proof(proof(&|c| c["htu"] = json!(other_path)), wrong_uri).await;
    // RFC 9449 4.3: the query and fragment of htu are ignored.
    let with_query = format!("{url}?x=1");
    let (status, _, _) = get_with_proof(
        &url,
        Some(&dpop),
        Some(&proof(&|c| c["htu"] = json!(with_query))),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    bad_proof(
        proof(&|c| c["htm"] = json!("POST")),
        "the DPoP proof's htm is not the request's method",
    )
    .await;
    let wrong_ath = "the DPoP proof's ath does not match the token";
    bad_proof(
        proof(&|c| c["ath"] = json!(ath("another token"))),
        wrong_ath,
    )
    .await;
    bad_proof(
        proof(&|c| {
            c.as_object_mut().expect("object").remove("ath");
        }),
        wrong_ath,
    )
    .await;
    bad_proof(
        sign_proof(&dpop_key(), &claims(&|_| {})),
        "the DPoP proof's key is not the token's cnf key",
    )
    .await;
    bad_proof(
        proof(&|c| c["iat"] = json!(now() - 300)),
        "the DPoP proof's iat is missing or outside the window",
    )
    .await;

    // A proof is good once.
    let once = proof(&|_| {});
    let (status, _, _) = get_with_proof(&url, Some(&dpop), Some(&once)).await;
    assert_eq!(status, StatusCode::OK);
    bad_proof(once, "the DPoP proof's jti is missing or was used before").await;
    assert_eq!(
        emulator.cpapi_requests(),
        16,
        "refused requests are counted"
    );
    assert_eq!(
        emulator.dpop_nonce_challenges(),
        2,
        "only the token endpoint's"
    );
}

#[tokio::test]
async fn the_api_can_require_its_own_nonce() {
    let (emulator, client) = emulator_with_nonce(true).await;
    let key = dpop_key();
    let token = dpop_access_token(&emulator, &client, &key, CPAPI_SCOPE).await;
    let challenges = emulator.dpop_nonce_challenges();
    let path = "/api/v1/event?maxEvents=1";
    let url = format!("{}/api/v1/event", emulator.cpapi_base_url());
    let dpop = format!("DPoP {token}");
    let proof = |nonce: Option<&str>| {
        let mut claims = proof_claims("GET", &url, nonce);
        claims["ath"] = json!(ath(&token));
        sign_proof(&key, &claims)
    };

    let headers = assert_unauthorized(
        &emulator,
        path,
        Some(&dpop),
        Some(&proof(None)),
        "use_dpop_nonce",
        NONCE_NEEDED,
    )
    .await;
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    let nonce = headers[DPOP_NONCE].to_str().expect("ASCII").to_owned();
    assert_eq!(emulator.dpop_nonce_challenges(), challenges + 1);

    let full_url = format!("{}{path}", emulator.cpapi_base_url());
    let (status, _, body) =
        get_with_proof(&full_url, Some(&dpop), Some(&proof(Some(&nonce)))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["count"], 1);
    // The nonce stays good until it is rotated.
    let (status, _, _) = get_with_proof(&full_url, Some(&dpop), Some(&proof(Some(&nonce)))).await;
    assert_eq!(status, StatusCode::OK);

    emulator.rotate_dpop_nonce();
    let headers = assert_unauthorized(
        &emulator,
        path,
        Some(&dpop),
        Some(&proof(Some(&nonce))),
        "use_dpop_nonce",
        NONCE_NEEDED,
    )
    .await;
    let rotated = headers[DPOP_NONCE].to_str().expect("ASCII").to_owned();
    assert_ne!(rotated, nonce);
    let (status, _, _) = get_with_proof(&full_url, Some(&dpop), Some(&proof(Some(&rotated)))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(emulator.dpop_nonce_challenges(), challenges + 2);
}

#[tokio::test]
async fn the_openapi_document_needs_no_token() {
    let (emulator, _) = emulator_with_nonce(false).await;
    let served = get_json(&format!("{}/cpapi/openapi.json", emulator.issuer())).await;
    assert_eq!(served["openapi"], "3.1.0");
    assert_eq!(
        served["servers"],
        json!([{"url": emulator.cpapi_base_url()}])
    );
    let mut without_servers = served.clone();
    without_servers
        .as_object_mut()
        .expect("object")
        .remove("servers");
    assert_eq!(without_servers, emulator::cpapi_openapi());
    let paths: BTreeSet<&str> = keys(&served["paths"]);
    assert_eq!(
        paths,
        BTreeSet::from([
            "/api/v1/certificate/{herId}",
            "/api/v1/certificate/{herId}/encryption",
            "/api/v1/certificate/{herId}/signing",
            "/api/v1/communicationparty",
            "/api/v1/communicationparty/export",
            "/api/v1/communicationparty/search",
            "/api/v1/communicationparty/{herId}",
            "/api/v1/communicationparty/{herId}/legacy",
            "/api/v1/event",
            "/api/v1/event/latest",
            "/api/v1/organization/{organizationNumber}",
        ])
    );
    assert_eq!(served["security"], json!([{"DPoP": []}]));
    let scheme = &served["components"]["securitySchemes"]["DPoP"];
    assert_eq!(scheme["type"], "apiKey");
    assert_eq!(scheme["in"], "header");
    assert_eq!(scheme["name"], "Authorization");
    for schema in [
        "EventsResponse",
        "Event",
        "EventType",
        "CommunicationParty",
        "CommunicationPartyType",
        "CommunicationPartyExport",
        "CommunicationParty_Legacy",
        "HPRInformation",
        "Certificate",
    ] {
        assert!(
            served["components"]["schemas"][schema].is_object(),
            "{schema}"
        );
    }
    assert_eq!(
        served["components"]["schemas"]["EventType"]["enum"],
        json!(["CommunicationPartyCreated", "CommunicationPartyUpdated"])
    );
    assert_eq!(emulator.cpapi_requests(), 0, "not an API request");
    assert_eq!(emulator::CPAPI_SCOPE, CPAPI_SCOPE);
}
