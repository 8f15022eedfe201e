//! The emulator's CPE OpenAPI document (utoipa, served at `/openapi.json`) held against
//! the contract, `openapi/cpe.json`, by the comparison of `support::openapi_drift` (see
//! there for what is compared). CPE's contract allows no differences: every media type
//! and security scheme must be as cpe.json has it.

mod support;

use serde_json::{Value, json};

use support::openapi_drift::{Rules, normalise, operations, served_document};

/// cpe.json, with nothing allowed to differ.
const CPE: Rules = Rules {
    contract: "cpe.json",
    optional_media_types: &[],
    scheme_stand_ins: &[],
};

/// The document a running emulator serves at `/openapi.json`.
async fn served() -> Value {
    served_document(|emulator| format!("{}/openapi.json", emulator.cpe_base_url())).await
}

#[tokio::test]
async fn the_served_document_matches_cpe_json() {
    let served = served().await;
    CPE.assert_matches(&served);
    // And what the comparison relies on is really there.
    let scheme = &served["components"]["securitySchemes"]["HelseID"];
    assert_eq!(scheme["type"], "http");
    assert_eq!(scheme["scheme"], "bearer");
    assert_eq!(scheme["bearerFormat"], "JWT");
    assert_eq!(operations(&served).len(), 3);
    assert_eq!(
        served
            .pointer("/components/schemas")
            .and_then(Value::as_object)
            .map(|s| s.len()),
        Some(8)
    );
}

#[tokio::test]
async fn the_comparison_reports_each_mutation_of_cpe_json() {
    let served = served().await;
    let mut mutated = CPE.read_contract();
    // Rename a property (in `properties` only; `required` still names `HerId`).
    let properties = mutated
        .pointer_mut("/components/schemas/EventValue/properties")
        .and_then(Value::as_object_mut)
        .expect("EventValue properties");
    let her_id = properties.remove("HerId").expect("HerId");
    properties.insert("HerID".to_owned(), her_id);
    // Change a type.
    *mutated
        .pointer_mut("/components/schemas/Period/properties/From")
        .expect("Period.From") = json!({"type": "integer", "format": "int64"});
    // Drop a parameter.
    mutated
        .pointer_mut("/paths/~1CommunicationPartyEvents/get/parameters")
        .and_then(Value::as_array_mut)
        .expect("parameters")
        .retain(|parameter| parameter["name"] != "fromDatetime");

    assert_eq!(
        CPE.drift(&mutated, &served),
        [
            "GET /CommunicationPartyEvents: parameter `fromDatetime` (query) is in the emulator's document, not in cpe.json",
            "schema `EventValue`: property `HerID` is in cpe.json, missing from the emulator's document",
            "schema `EventValue`: property `HerId` is in the emulator's document, not in cpe.json",
            "schema `Period`: property `From` is integer (int64) in cpe.json, string (date-time) in the emulator's document",
        ]
    );
}

#[tokio::test]
async fn the_comparison_reports_operations_nullability_required_responses_and_schemes() {
    let served = served().await;
    let mut mutated = CPE.read_contract();
    let mut edit = |pointer: &str, value: Value| {
        *mutated
            .pointer_mut(pointer)
            .unwrap_or_else(|| panic!("{pointer}")) = value;
    };
    edit(
        "/paths/~1CommunicationPartyExport/get/operationId",
        json!("exportAll"),
    );
    edit(
        "/paths/~1CommunicationParties~1{herId}/get/parameters/0/schema",
        json!({"type": "integer", "format": "int64"}),
    );
    edit(
        "/paths/~1CommunicationParties~1{herId}/get/responses/200/content/application~1json/schema",
        json!({"$ref": "#/components/schemas/EventValue"}),
    );
    edit(
        "/components/schemas/EventValue/properties/OrgNr",
        json!({"type": "integer", "format": "int32"}),
    );
    edit("/components/schemas/Period/required", json!(["From", "To"]));
    edit(
        "/components/securitySchemes/HelseID/bearerFormat",
        json!("opaque"),
    );
    edit("/security", json!([]));
    let paths = mutated["paths"].as_object_mut().expect("paths");
    let events = paths.remove("/CommunicationPartyEvents").expect("events");
    paths.insert("/CommunicationPartyEvents/".to_owned(), events);
    mutated["components"]["schemas"]["Extra"] = json!({"type": "object"});

    assert_eq!(
        CPE.drift(&mutated, &served),
        [
            "GET /CommunicationPartyEvents is in the emulator's document, not in cpe.json",
            "GET /CommunicationPartyEvents/ is in cpe.json, missing from the emulator's document",
            "GET /CommunicationParties/{herId}: parameter `herId` (path): schema is integer (int64) in cpe.json, integer (int32) in the emulator's document",
            "GET /CommunicationParties/{herId}: response 200: application/json schema is $ref EventValue in cpe.json, $ref CommunicationParty in the emulator's document",
            "GET /CommunicationParties/{herId}: security is [] in cpe.json, [HelseID] in the emulator's document",
            "GET /CommunicationPartyExport: operationId is \"exportAll\" in cpe.json, \"getCommunicationPartyExport\" in the emulator's document",
            "GET /CommunicationPartyExport: security is [] in cpe.json, [HelseID] in the emulator's document",
            "schema `Extra` is in cpe.json, missing from the emulator's document",
            "schema `EventValue`: property `OrgNr` is integer (int32) in cpe.json, nullable integer (int32) in the emulator's document",
            "schema `Period`: required is [From, To] in cpe.json, [From] in the emulator's document",
            "security scheme `HelseID`: bearerFormat is opaque in cpe.json, JWT in the emulator's document",
        ]
    );
}

#[test]
fn nullable_forms_of_openapi_3_0_and_3_1_compare_equal() {
    let nullable_string = [
        json!({"type": "string", "nullable": true}),
        json!({"type": ["string", "null"]}),
        json!({"type": ["null", "string"]}),
        json!({"oneOf": [{"type": "null"}, {"type": "string"}]}),
        json!({"anyOf": [{"type": "string"}, {"type": "null"}]}),
    ];
    for schema in &nullable_string {
        assert_eq!(
            normalise(schema),
            normalise(&nullable_string[0]),
            "{schema}"
        );
        assert_eq!(normalise(schema).to_string(), "nullable string");
    }
    let nullable_ref = [
        json!({"allOf": [{"$ref": "#/components/schemas/Period"}], "nullable": true}),
        json!({"oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/Period"}]}),
        json!({"$ref": "#/components/schemas/Period", "nullable": true}),
    ];
    for schema in &nullable_ref {
        assert_eq!(
            normalise(schema).to_string(),
            "nullable $ref Period",
            "{schema}"
        );
    }
    assert_eq!(
        normalise(&json!({"$ref": "#/components/schemas/Period", "description": "x"})).to_string(),
        "$ref Period"
    );
    assert_eq!(
        normalise(&json!({"type": "array", "items": {"$ref": "#/components/schemas/EventValue"}}))
            .to_string(),
        "array of $ref EventValue"
    );
    assert_ne!(
        normalise(&json!({"type": "string"})),
        normalise(&json!({"type": "string", "format": "date-time"}))
    );
    assert_ne!(
        normalise(&json!({"type": "integer", "format": "int32"})),
        normalise(&json!({"type": ["integer", "null"], "format": "int32"}))
    );
}
