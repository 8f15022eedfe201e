//! The Meldingstjener (MSH) v2 contract, `openapi/msh-api-v2.json`: NHN's document byte
//! for byte (held to the shared reference copy when there is one), and the emulator's
//! utoipa document (OpenAPI 3.1, served at `GET {issuer}/msh/openapi.json`) held to it
//! by the comparison of `support::openapi_drift` (operations, parameters, responses,
//! schemas with their `required` lists, nullability and closedness, security), plus the
//! request bodies' media types and schemas, which that comparison leaves out.
//!
//! The emulator's document differs from NHN's in one deliberate way: the security
//! scheme `Bearer`. NHN's document says `type: http, scheme: Bearer, bearerFormat: JWT`,
//! but the Meldingstjener takes DPoP-bound tokens only (`Authorization: DPoP <token>`,
//! which utoipa 6 cannot write as an `http` scheme), so the emulator documents the same
//! header under the same name as `type: apiKey, in: header, name: Authorization`.
//! Exactly that pair is taken as the same scheme. The emulator documents more
//! responses than NHN (401 on every operation, 413 and 415 on the two that take a body),
//! which the comparison allows.

mod support;

use std::collections::BTreeMap;

use serde_json::{Value, json};

use helseid_emulator as emulator;
use support::openapi_drift::{Rules, SchemeStandIn, normalise, operations, served_document};

/// msh-api-v2.json, with the one difference above allowed.
const MSH: Rules = Rules {
    contract: "msh-api-v2.json",
    optional_media_types: &[],
    scheme_stand_ins: &[SchemeStandIn {
        name: "Bearer",
        contract: &[
            ("type", "http"),
            ("scheme", "bearer"),
            ("bearerFormat", "JWT"),
        ],
        served: &[
            ("type", "apiKey"),
            ("in", "header"),
            ("name", "Authorization"),
        ],
    }],
};

/// The document a running emulator serves at `/msh/openapi.json`.
async fn served() -> Value {
    served_document(|emulator| format!("{}/msh/openapi.json", emulator.msh_base_url())).await
}

/// Each operation's request body: `METHOD /path` -> media type -> schema, as normalised.
fn request_bodies(doc: &Value) -> BTreeMap<String, BTreeMap<String, String>> {
    operations(doc)
        .into_iter()
        .filter_map(|(key, (_, operation))| {
            let content = operation.pointer("/requestBody/content")?.as_object()?;
            let media = content
                .iter()
                .map(|(media, body)| (media.clone(), normalise(&body["schema"]).to_string()))
                .collect();
            Some((key, media))
        })
        .collect()
}

#[test]
fn msh_api_v2_json_is_the_shared_document_byte_for_byte() {
    let ours = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/openapi/msh-api-v2.json"
    ))
    .expect("openapi/msh-api-v2.json");
    let shared = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/reference/openapi/msh-api-v2.json"
    );
    // The shared reference lives beside the repository in this workspace; a checkout
    // without it has only the copy, whose shape is checked below.
    if let Ok(theirs) = std::fs::read(shared) {
        assert!(
            ours == theirs,
            "openapi/msh-api-v2.json differs from {shared}: copy it again, byte for byte"
        );
    }
    let doc: Value = serde_json::from_slice(&ours).expect("JSON");
    assert_eq!(doc["openapi"], "3.0.4");
    assert_eq!(operations(&doc).len(), 8);
}

#[tokio::test]
async fn the_served_document_matches_msh_api_v2_json() {
    let served = served().await;
    MSH.assert_matches(&served);
    assert_eq!(served["openapi"], "3.1.0");
    assert_eq!(emulator::msh_openapi()["openapi"], "3.1.0");
    assert_eq!(
        served["paths"],
        emulator::msh_openapi()["paths"],
        "msh_openapi() is the served document but for its servers"
    );
    // What the comparison relies on is really there: the 8 operations, 12 schemas, the
    // two headers on each operation.
    let ops = operations(&served);
    assert_eq!(ops.len(), 8);
    for (key, (_, operation)) in &ops {
        let headers: Vec<&str> = operation["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["in"] == "header" && p["required"] == true)
            .filter_map(|p| p["name"].as_str())
            .collect();
        assert_eq!(headers, ["api-version", "nhn-source-system"], "{key}");
    }
    assert_eq!(
        served
            .pointer("/components/schemas")
            .and_then(Value::as_object)
            .map(|s| s.len()),
        Some(12)
    );
    let created = &served["paths"]["/Messages"]["post"]["responses"]["201"]["content"]["application/json"]
        ["schema"];
    assert_eq!(
        (&created["type"], &created["format"]),
        (&json!("string"), &json!("uuid"))
    );
    // The request bodies: the same three media types and schemas as NHN's.
    let contract = MSH.read_contract();
    assert_eq!(request_bodies(&served), request_bodies(&contract));
    assert_eq!(request_bodies(&served).len(), 2);
}

#[tokio::test]
async fn the_comparison_reports_each_mutation_of_msh_api_v2_json() {
    let served = served().await;
    let mut mutated = MSH.read_contract();
    // An operation the emulator does not serve.
    mutated["paths"]["/Messages/{id}/forward"] = json!({"post": {"operationId": "Forward",
        "responses": {"204": {"description": "forwarded"}}}});
    // A header parameter no longer required.
    mutated["paths"]["/Messages"]["get"]["parameters"][6]["required"] = json!(false);
    // A bound changed.
    mutated["paths"]["/Messages"]["get"]["parameters"][4]["schema"]["maximum"] = json!(50);
    // An enum value added.
    mutated["components"]["schemas"]["DeliveryState"]["enum"] =
        json!(["Unconfirmed", "Acknowledged", "Rejected", "Lost"]);
    // A property renamed.
    let properties = mutated
        .pointer_mut("/components/schemas/Message/properties")
        .and_then(Value::as_object_mut)
        .expect("Message properties");
    let is_app_rec = properties.remove("isAppRec").expect("isAppRec");
    properties.insert("isApprec".to_owned(), is_app_rec);
    // The scheme as plain Bearer on the emulator's side too.
    let mut bearer = served.clone();
    bearer["components"]["securitySchemes"]["Bearer"] = json!({"type": "http", "scheme": "bearer"});

    assert_eq!(
        MSH.drift(&mutated, &served),
        [
            "POST /Messages/{id}/forward is in msh-api-v2.json, missing from the emulator's document",
            "GET /Messages: parameter `MessagesToFetch` (query): maximum is 50 in msh-api-v2.json, 100 in the emulator's document",
            "GET /Messages: parameter `api-version` (header): required is false in msh-api-v2.json, true in the emulator's document",
            "schema `DeliveryState`: enum is [Acknowledged, Lost, Rejected, Unconfirmed] in msh-api-v2.json, [Acknowledged, Rejected, Unconfirmed] in the emulator's document",
            "schema `Message`: property `isAppRec` is in the emulator's document, not in msh-api-v2.json",
            "schema `Message`: property `isApprec` is in msh-api-v2.json, missing from the emulator's document",
        ]
    );
    assert_eq!(
        MSH.drift(&MSH.read_contract(), &bearer),
        [
            "security scheme `Bearer`: bearerFormat is JWT in msh-api-v2.json, absent in the emulator's document"
        ]
    );
}
