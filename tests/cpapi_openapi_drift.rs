//! The emulator's CommunicationParty API v2 OpenAPI document (utoipa, OpenAPI 3.1,
//! served at `GET {issuer}/cpapi/openapi.json`) held against the contract,
//! `openapi/cpapi.json` (OpenAPI 3.0.4), by the comparison of `support::openapi_drift`
//! (see there for what is compared: operations, parameters, responses, schemas with
//! their `required` lists, nullability and closedness, security).
//!
//! cpapi.json is written the way an ASP.NET (Swashbuckle) server documents itself; the
//! emulator's document differs from it in two deliberate ways, and in no other:
//!
//! - Media types: ASP.NET offers every 200 body as `text/plain`, `application/json` and
//!   `text/json`. The emulator answers `application/json` only, and documents only that.
//!   So `text/plain` and `text/json` may be absent from the emulator's document; every
//!   other media type of the contract must be there with the same schema, which means
//!   `application/json` for every 200. The emulator may not document a media type the
//!   contract lacks. (It may document more responses: its 400s, whose problem+json body
//!   it leaves undocumented, as the contract leaves the 404's.)
//! - The security scheme `DPoP`: the contract has `type: http, scheme: DPoP` (RFC 9449's
//!   `Authorization: DPoP <token>`), which utoipa 6 cannot write (its `HttpAuthScheme`
//!   has no DPoP), so the emulator documents the same header as `type: apiKey,
//!   in: header, name: Authorization`. Exactly that pair is taken as the same scheme;
//!   any other difference in it is reported.
//!
//! `additionalProperties: false` (ASP.NET closes its objects) is compared: the
//! emulator's types are documented closed where NHN's are, and open where NHN's are
//! (`additionalProperties: {}` on the older model's objects).

mod support;

use serde_json::{Value, json};

use helseid_emulator as emulator;
use support::openapi_drift::{Rules, SchemeStandIn, operations, served_document};

/// cpapi.json, with the two differences above allowed.
const CPAPI: Rules = Rules {
    contract: "cpapi.json",
    optional_media_types: &["text/plain", "text/json"],
    scheme_stand_ins: &[SchemeStandIn {
        name: "DPoP",
        contract: &[("type", "http"), ("scheme", "dpop")],
        served: &[
            ("type", "apiKey"),
            ("in", "header"),
            ("name", "Authorization"),
        ],
    }],
};

/// Sets the value at `pointer`, adding its last key if it is new.
fn edit(doc: &mut Value, pointer: &str, value: Value) {
    let (parent, key) = pointer.rsplit_once('/').expect("a JSON pointer");
    let key = key.replace("~1", "/").replace("~0", "~");
    doc.pointer_mut(parent)
        .and_then(Value::as_object_mut)
        .unwrap_or_else(|| panic!("{parent} is not an object"))
        .insert(key, value);
}

/// The document a running emulator serves at `/cpapi/openapi.json`.
async fn served() -> Value {
    served_document(|emulator| format!("{}/cpapi/openapi.json", emulator.issuer())).await
}

#[tokio::test]
async fn the_served_document_matches_cpapi_json() {
    let served = served().await;
    CPAPI.assert_matches(&served);
    // A 3.1 document held against a 3.0 one; the served one is the one the crate
    // exposes (tests/emulator_cpapi.rs checks that they are the same but for `servers`).
    assert_eq!(served["openapi"], "3.1.0");
    assert_eq!(emulator::cpapi_openapi()["openapi"], "3.1.0");
    assert_eq!(CPAPI.read_contract()["openapi"], "3.0.4");
    // And what the comparison relies on is really there: NHN's 11 operations and 34
    // schemas.
    assert_eq!(operations(&served).len(), 11);
    assert_eq!(
        served
            .pointer("/components/schemas")
            .and_then(Value::as_object)
            .map(|s| s.len()),
        Some(34)
    );
    let scheme = &served["components"]["securitySchemes"]["DPoP"];
    assert_eq!(
        (&scheme["type"], &scheme["in"], &scheme["name"]),
        (&json!("apiKey"), &json!("header"), &json!("Authorization"))
    );
    let mut required: Vec<String> = serde_json::from_value(
        served["components"]["schemas"]["CommunicationParty"]["required"].clone(),
    )
    .expect("a required list");
    required.sort();
    assert_eq!(required, ["amqpTransportStatus", "herId", "type"]);
}

#[tokio::test]
async fn the_comparison_reports_each_mutation_of_cpapi_json() {
    let served = served().await;
    let mut mutated = CPAPI.read_contract();
    // Remove an operation.
    mutated["paths"]
        .as_object_mut()
        .expect("paths")
        .remove("/api/v1/event/latest")
        .expect("latest");
    // Rename a property (in `properties` only; `required` still names `herId`).
    let properties = mutated
        .pointer_mut("/components/schemas/Event/properties")
        .and_then(Value::as_object_mut)
        .expect("Event properties");
    let her_id = properties.remove("herId").expect("herId");
    properties.insert("herID".to_owned(), her_id);
    // Change a `required` list.
    edit(
        &mut mutated,
        "/components/schemas/EventsResponse/required",
        json!(["results", "count"]),
    );
    // Change a parameter's format.
    edit(
        &mut mutated,
        "/paths/~1api~1v1~1event/get/parameters/0/schema/format",
        json!("int32"),
    );
    // Change a media type: the body as XML.
    let ok = mutated
        .pointer_mut("/paths/~1api~1v1~1communicationparty~1{herId}/get/responses/200/content")
        .and_then(Value::as_object_mut)
        .expect("200 content");
    let body = ok.remove("application/json").expect("application/json");
    ok.insert("application/xml".to_owned(), body);
    // A response the emulator does not document.
    mutated
        .pointer_mut("/paths/~1api~1v1~1organization~1{organizationNumber}/get/responses")
        .and_then(Value::as_object_mut)
        .expect("responses")
        .insert("409".to_owned(), json!({"description": "conflict"}));

    assert_eq!(
        CPAPI.drift(&mutated, &served),
        [
            "GET /api/v1/event/latest is in the emulator's document, not in cpapi.json",
            "GET /api/v1/communicationparty/{herId}: response 200: content application/json is in the emulator's document, not in cpapi.json",
            "GET /api/v1/communicationparty/{herId}: response 200: content application/xml is in cpapi.json, missing from the emulator's document",
            "GET /api/v1/event: parameter `fromSequenceNumber` (query): schema is integer (int32) in cpapi.json, integer (int64) in the emulator's document",
            "GET /api/v1/organization/{organizationNumber}: response 409 is in cpapi.json, missing from the emulator's document",
            "schema `Event`: property `herID` is in cpapi.json, missing from the emulator's document",
            "schema `Event`: property `herId` is in the emulator's document, not in cpapi.json",
            "schema `EventsResponse`: required is [count, results] in cpapi.json, [results] in the emulator's document",
        ]
    );
}

#[tokio::test]
async fn the_comparison_reports_bodies_bounds_enums_nullability_closedness_and_the_scheme() {
    let served = served().await;
    let mut mutated = CPAPI.read_contract();
    let party = "/paths/~1api~1v1~1communicationparty~1{herId}/get";
    // The 200 offered only as text/json: the emulator's application/json is not in the
    // contract, and the contract's only body is one the emulator may leave out.
    let ok = mutated
        .pointer_mut(&format!("{party}/responses/200/content"))
        .and_then(Value::as_object_mut)
        .expect("200 content");
    ok.retain(|media, _| media == "text/json");
    // A media type the emulator does not document, beside the ones it may leave out.
    edit(
        &mut mutated,
        "/paths/~1api~1v1~1event~1latest/get/responses/200/content/application~1xml",
        json!({"schema": {"$ref": "#/components/schemas/Event"}}),
    );
    edit(
        &mut mutated,
        "/paths/~1api~1v1~1event/get/parameters/1/schema/maximum",
        json!(500),
    );
    edit(
        &mut mutated,
        "/components/schemas/EventType/enum",
        json!(["CommunicationPartyCreated", "CommunicationPartyDeleted"]),
    );
    edit(
        &mut mutated,
        "/components/schemas/CommunicationParty/properties/name/nullable",
        json!(false),
    );
    edit(
        &mut mutated,
        "/components/schemas/Event/additionalProperties",
        json!(true),
    );
    edit(
        &mut mutated,
        "/components/securitySchemes/DPoP/scheme",
        json!("Bearer"),
    );

    assert_eq!(
        CPAPI.drift(&mutated, &served),
        [
            "GET /api/v1/communicationparty/{herId}: response 200: a body is in cpapi.json, missing from the emulator's document",
            "GET /api/v1/communicationparty/{herId}: response 200: content application/json is in the emulator's document, not in cpapi.json",
            "GET /api/v1/event: parameter `maxEvents` (query): maximum is 500 in cpapi.json, 1000 in the emulator's document",
            "GET /api/v1/event/latest: response 200: content application/xml is in cpapi.json, missing from the emulator's document",
            "schema `CommunicationParty`: property `name` is string in cpapi.json, nullable string in the emulator's document",
            "schema `Event`: other properties is open in cpapi.json, closed in the emulator's document",
            "schema `EventType`: enum is [CommunicationPartyCreated, CommunicationPartyDeleted] in cpapi.json, [CommunicationPartyCreated, CommunicationPartyUpdated] in the emulator's document",
            "security scheme `DPoP`: type is http in cpapi.json, apiKey in the emulator's document",
            "security scheme `DPoP`: scheme is bearer in cpapi.json, absent in the emulator's document",
            "security scheme `DPoP`: in is absent in cpapi.json, header in the emulator's document",
            "security scheme `DPoP`: name is absent in cpapi.json, Authorization in the emulator's document",
        ]
    );
}

#[tokio::test]
async fn the_allowed_differences_are_only_those_named() {
    let served = served().await;
    // The contract without its ASP.NET media types still matches...
    let mut slim = CPAPI.read_contract();
    for (_, item) in slim["paths"].as_object_mut().expect("paths") {
        for (_, operation) in item.as_object_mut().expect("a path item") {
            for (_, response) in operation["responses"].as_object_mut().expect("responses") {
                if let Some(content) = response.get_mut("content").and_then(Value::as_object_mut) {
                    content.retain(|media, _| media != "text/plain" && media != "text/json");
                }
            }
        }
    }
    assert_eq!(CPAPI.drift(&slim, &served), Vec::<String>::new());
    // ...and the served document may not add them.
    let mut served_more = served.clone();
    edit(
        &mut served_more,
        "/paths/~1api~1v1~1event/get/responses/200/content/application~1xml",
        json!({"schema": {"$ref": "#/components/schemas/EventsResponse"}}),
    );
    assert_eq!(
        CPAPI.drift(&CPAPI.read_contract(), &served_more),
        [
            "GET /api/v1/event: response 200: content application/xml is in the emulator's document, not in cpapi.json"
        ]
    );
    // The DPoP scheme stands in only as exactly an `Authorization` header.
    let mut cookie = served.clone();
    edit(
        &mut cookie,
        "/components/securitySchemes/DPoP/in",
        json!("cookie"),
    );
    assert_eq!(
        CPAPI.drift(&CPAPI.read_contract(), &cookie),
        [
            "security scheme `DPoP`: type is http in cpapi.json, apiKey in the emulator's document",
            "security scheme `DPoP`: scheme is dpop in cpapi.json, absent in the emulator's document",
            "security scheme `DPoP`: in is absent in cpapi.json, cookie in the emulator's document",
            "security scheme `DPoP`: name is absent in cpapi.json, Authorization in the emulator's document",
        ]
    );
    // CPE's contract allows neither difference.
    let strict = Rules {
        optional_media_types: &[],
        scheme_stand_ins: &[],
        ..CPAPI
    };
    assert_eq!(
        strict.drift(&CPAPI.read_contract(), &served).len(),
        11 * 2 + 4
    );
}
