//! The OpenAPI normalisation build.rs applies before progenitor generates a client.

#[allow(dead_code)]
#[path = "../src/normalise.rs"]
mod normalise;

use normalise::normalise;
use serde_json::{Value, json};

/// Operations as ASP.NET (Swashbuckle) writes them: three media types per body,
/// closed objects, error responses with and without a body, problem details as
/// `application/problem+json`, parameters with defaults and bounds.
fn aspnet_like() -> Value {
    let body = |schema: Value| {
        json!({
            "application/json": { "schema": schema },
            "text/json": { "schema": schema },
            "application/*+json": { "schema": schema }
        })
    };
    json!({
        "openapi": "3.0.4",
        "info": { "title": "t", "version": "v1" },
        "paths": {
            "/api/v1/communicationparty/search": {
                "post": {
                    "operationId": "search",
                    "requestBody": { "content": body(json!({ "$ref": "#/components/schemas/Search" })) },
                    "responses": {
                        "200": { "description": "ok", "content": {
                            "text/plain": { "schema": { "$ref": "#/components/schemas/Result" } },
                            "application/json": { "schema": { "$ref": "#/components/schemas/Result" } },
                            "text/json": { "schema": { "$ref": "#/components/schemas/Result" } }
                        } },
                        "400": { "description": "bad", "content": body(json!({ "$ref": "#/components/schemas/ProblemDetails" })) },
                        "401": { "description": "no token" },
                        "404": { "description": "none", "content": body(json!({ "$ref": "#/components/schemas/ProblemDetails" })) }
                    }
                }
            },
            "/api/v1/event": {
                "get": {
                    "operationId": "getEvents",
                    "parameters": [{
                        "name": "fromSequenceNumber", "in": "query",
                        "schema": { "minimum": 1, "type": "integer", "format": "int64", "default": 1 }
                    }],
                    "responses": {
                        "200": { "description": "ok", "content": {
                            "text/plain": { "schema": { "$ref": "#/components/schemas/Result" } },
                            "text/json": { "schema": { "$ref": "#/components/schemas/Result" } }
                        } },
                        "400": { "description": "bad", "content": {
                            "application/problem+json": { "schema": { "$ref": "#/components/schemas/ProblemDetails" } }
                        } },
                        "401": { "description": "no token" }
                    }
                },
                "patch": {
                    "operationId": "patchEvents",
                    "requestBody": { "content": {
                        "application/merge-patch+json": { "schema": { "$ref": "#/components/schemas/Search" } }
                    } },
                    "responses": {
                        "204": { "description": "done" },
                        "404": { "description": "none", "content": {
                            "application/problem+json; charset=utf-8": { "schema": { "$ref": "#/components/schemas/ProblemDetails" } },
                            "text/plain": { "schema": { "type": "string" } }
                        } }
                    }
                }
            }
        },
        "components": { "schemas": {
            "Search": { "type": "object", "additionalProperties": false, "properties": {
                "name": { "type": "string", "nullable": true },
                "inner": { "type": "object", "additionalProperties": false, "properties": {} }
            } },
            "Result": { "type": "object", "additionalProperties": false },
            "Open": { "type": "object", "additionalProperties": { "type": "string" } },
            "ProblemDetails": { "type": "object", "additionalProperties": {} }
        } }
    })
}

#[test]
fn keeps_one_media_type_per_body_preferring_application_json() {
    let mut doc = aspnet_like();
    let notes = normalise(&mut doc).unwrap();
    let op = &doc["paths"]["/api/v1/communicationparty/search"]["post"];
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&op["requestBody"]["content"]), ["application/json"]);
    assert_eq!(
        keys(&op["responses"]["200"]["content"]),
        ["application/json"]
    );
    assert_eq!(
        keys(&op["responses"]["400"]["content"]),
        ["application/json"]
    );
    assert!(
        notes.iter().any(|n| n
            == "POST /api/v1/communicationparty/search request body: kept `application/json`, dropped `application/*+json`, `text/json`"),
        "{notes:#?}"
    );
}

#[test]
fn without_application_json_keeps_the_first_json_media_type() {
    let mut doc = aspnet_like();
    let content =
        &mut doc["paths"]["/api/v1/communicationparty/search"]["post"]["requestBody"]["content"];
    content.as_object_mut().unwrap().remove("application/json");
    normalise(&mut doc).unwrap();
    let content =
        &doc["paths"]["/api/v1/communicationparty/search"]["post"]["requestBody"]["content"];
    let keys: Vec<_> = content.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["application/*+json"]);
}

/// The media types of a body, in order.
fn media_types(content: &Value) -> Vec<String> {
    content
        .as_object()
        .expect("an object")
        .keys()
        .cloned()
        .collect()
}

#[test]
fn json_response_bodies_of_other_media_types_are_read_as_application_json() {
    let mut doc = aspnet_like();
    let notes = normalise(&mut doc).unwrap();
    let get = &doc["paths"]["/api/v1/event"]["get"]["responses"];
    // `text/plain` and `text/json`: the JSON one, declared `application/json`.
    assert_eq!(media_types(&get["200"]["content"]), ["application/json"]);
    assert_eq!(
        get["200"]["content"]["application/json"]["schema"],
        json!({ "$ref": "#/components/schemas/Result" })
    );
    // Problem details, alone or beside text.
    assert_eq!(media_types(&get["400"]["content"]), ["application/json"]);
    let patch = &doc["paths"]["/api/v1/event"]["patch"];
    assert_eq!(
        media_types(&patch["responses"]["404"]["content"]),
        ["application/json"]
    );
    for note in [
        "GET /api/v1/event response 200: kept `text/json`, dropped `text/plain`",
        "GET /api/v1/event response 200: `text/json` read as `application/json` (progenitor types no other)",
        "GET /api/v1/event response 400: `application/problem+json` read as `application/json` (progenitor types no other)",
        "PATCH /api/v1/event response 404: kept `application/problem+json; charset=utf-8`, dropped `text/plain`",
    ] {
        assert!(notes.iter().any(|n| n == note), "{note}\n{notes:#?}");
    }
    // A request body keeps its media type: it is the Content-Type the client sends.
    assert_eq!(
        media_types(&patch["requestBody"]["content"]),
        ["application/merge-patch+json"]
    );
    // Parameters, their defaults and bounds are the document's.
    assert_eq!(
        doc["paths"]["/api/v1/event"]["get"]["parameters"][0]["schema"],
        json!({ "minimum": 1, "type": "integer", "format": "int64", "default": 1 })
    );
}

#[test]
fn error_responses_without_a_body_are_dropped_when_others_have_one() {
    let mut doc = aspnet_like();
    let notes = normalise(&mut doc).unwrap();
    let responses = &doc["paths"]["/api/v1/communicationparty/search"]["post"]["responses"];
    assert!(responses.get("401").is_none());
    assert!(responses["404"]["content"]["application/json"].is_object());
    assert!(
        notes
            .iter()
            .any(|n| n.contains("error responses without a body (401) dropped"))
    );
}

#[test]
fn error_responses_with_different_bodies_become_untyped() {
    let mut doc = aspnet_like();
    doc["paths"]["/api/v1/communicationparty/search"]["post"]["responses"]["404"]["content"]["application/json"]
        ["schema"] = json!({ "type": "string" });
    let notes = normalise(&mut doc).unwrap();
    let responses = &doc["paths"]["/api/v1/communicationparty/search"]["post"]["responses"];
    assert!(responses["400"].get("content").is_none());
    assert!(responses["404"].get("content").is_none());
    assert!(
        notes
            .iter()
            .any(|n| n.contains("400, 404 have different bodies")),
        "{notes:#?}"
    );
}

#[test]
fn success_responses_with_different_bodies_keep_the_lowest_code() {
    let mut doc = aspnet_like();
    doc["paths"]["/api/v1/communicationparty/search"]["post"]["responses"]["202"] = json!({ "description": "accepted", "content": { "application/json": { "schema": { "type": "string" } } } });
    normalise(&mut doc).unwrap();
    let responses = &doc["paths"]["/api/v1/communicationparty/search"]["post"]["responses"];
    assert!(responses.get("200").is_some());
    assert!(responses.get("202").is_none());
}

#[test]
fn closed_objects_are_opened_and_other_additional_properties_kept() {
    let mut doc = aspnet_like();
    let notes = normalise(&mut doc).unwrap();
    let schemas = &doc["components"]["schemas"];
    assert!(schemas["Search"].get("additionalProperties").is_none());
    assert!(
        schemas["Search"]["properties"]["inner"]
            .get("additionalProperties")
            .is_none()
    );
    assert!(schemas["Result"].get("additionalProperties").is_none());
    assert_eq!(
        schemas["Open"]["additionalProperties"],
        json!({ "type": "string" })
    );
    assert_eq!(schemas["ProblemDetails"]["additionalProperties"], json!({}));
    assert!(
        notes.contains(
            &"/components/schemas/Search: removed `additionalProperties: false`".to_owned()
        )
    );
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("/components/schemas/Search/properties/inner:"))
    );
}

#[test]
fn a_document_that_needs_nothing_is_left_alone() {
    let mut doc = json!({
        "openapi": "3.0.3",
        "info": { "title": "t", "version": "1" },
        "paths": { "/x": { "get": { "operationId": "getX", "responses": {
            "200": { "description": "ok", "content": { "application/json": { "schema": { "type": "string" } } } }
        } } } }
    });
    let before = doc.clone();
    assert_eq!(normalise(&mut doc).unwrap(), Vec::<String>::new());
    assert_eq!(doc, before);
}

#[test]
fn other_openapi_versions_are_refused_with_a_reason() {
    for (version, expected) in [
        (json!("3.1.0"), "`openapi: 3.1.0` is not supported"),
        (json!("2.0"), "`openapi: 2.0` is not supported"),
    ] {
        let mut doc = json!({ "openapi": version, "paths": {} });
        let e = normalise(&mut doc).unwrap_err();
        assert!(e.contains(expected), "{e}");
    }
    let e = normalise(&mut json!({ "swagger": "2.0" })).unwrap_err();
    assert!(e.contains("no `openapi` version"), "{e}");
}

#[test]
fn the_shipped_cpe_document_needs_only_the_error_response_rewrite() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi/cpe.json"))
        .unwrap();
    let mut doc: Value = serde_json::from_str(&text).unwrap();
    let notes = normalise(&mut doc).unwrap();
    assert_eq!(
        notes,
        [
            "GET /CommunicationParties/{herId}: error responses without a body (401) dropped: other error responses have one",
            "GET /CommunicationPartyEvents: error responses without a body (401) dropped: other error responses have one",
        ]
    );
}

/// Every operation of a document: (`METHOD path`, operation).
fn operations(doc: &Value) -> Vec<(String, &Value)> {
    let mut operations = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("a path item") {
            operations.push((format!("{} {path}", method.to_uppercase()), operation));
        }
    }
    operations
}

/// Asserts that every body left is `application/json` (which progenitor types), that
/// no object is closed and that no string schema carries a constraint.
fn assert_generatable(doc: &Value) {
    for (name, operation) in operations(doc) {
        if let Some(content) = operation.pointer("/requestBody/content") {
            assert_eq!(media_types(content), ["application/json"], "{name} request");
        }
        for (status, response) in operation["responses"].as_object().expect("responses") {
            if let Some(content) = response.get("content") {
                assert_eq!(
                    media_types(content),
                    ["application/json"],
                    "{name} {status}"
                );
            }
        }
        assert!(operation["operationId"].is_string(), "{name}");
    }
    let text = doc.to_string();
    for gone in [
        "\"additionalProperties\":false",
        "\"pattern\"",
        "\"minLength\"",
    ] {
        assert!(!text.contains(gone), "{gone} is left");
    }
}

#[test]
fn the_shipped_cpapi_document_gets_typed_bodies() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../openapi/cpapi.json"
    ))
    .unwrap();
    let mut doc: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["openapi"], "3.0.4");
    let notes = normalise(&mut doc).unwrap();
    assert_generatable(&doc);
    // The older model's objects stay open (`additionalProperties: {}`).
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    assert_eq!(schemas["Code"]["additionalProperties"], json!({}));
    // cpapi.json names its operations: none is made up.
    assert!(!notes.iter().any(|n| n.contains("named")), "{notes:?}");
    let count = |what: &str| notes.iter().filter(|n| n.contains(what)).count();
    // Three media types for each of the 11 answers and 2 request bodies.
    assert_eq!(count("kept `application/json`, dropped"), 13, "{notes:?}");
    assert_eq!(
        count("removed `additionalProperties: false`"),
        21,
        "{notes:?}"
    );
    // The postal code's and the organisation number's (a path parameter).
    assert_eq!(count("removed `pattern`"), 2, "{notes:?}");
    assert_eq!(count("removed `minLength`"), 2, "{notes:?}");
    // Nothing else: the error responses have no bodies to make alike.
    assert_eq!(notes.len(), 13 + 21 + 2 + 2, "{notes:?}");
}

#[test]
fn operations_without_a_name_are_named_after_their_method_and_path() {
    let schemas = ["CommunicationParty".to_owned(), "Event".to_owned()];
    for (method, path, name) in [
        (
            "get",
            "/api/v1/communicationparty/{herId}",
            "getCommunicationPartyByHerId",
        ),
        (
            "post",
            "/api/v1/communicationparty",
            "postCommunicationParty",
        ),
        (
            "post",
            "/api/v1/communicationparty/search",
            "postCommunicationPartySearch",
        ),
        (
            "get",
            "/api/v1/communicationparty/{herId}/legacy",
            "getCommunicationPartyLegacyByHerId",
        ),
        ("get", "/api/v1/event/latest", "getEventLatest"),
        (
            "get",
            "/api/v12/certificate/{herId}/signing",
            "getCertificateSigningByHerId",
        ),
        (
            "get",
            "/api/v1/organization/{organizationNumber}",
            "getOrganizationByOrganizationNumber",
        ),
        // No `/api/vN` prefix, a version-like word later, several parameters.
        (
            "delete",
            "/tenants/{tenantId}/v2/users/{userId}",
            "deleteTenantsV2UsersByTenantIdByUserId",
        ),
        ("get", "/", "get"),
    ] {
        assert_eq!(
            normalise::operation_id(method, path, &schemas),
            name,
            "{method} {path}"
        );
    }
}

#[test]
fn two_operations_with_the_same_name_are_refused() {
    let mut doc = json!({
        "openapi": "3.0.4",
        "info": { "title": "t", "version": "v1" },
        "paths": {
            "/api/v1/event": { "get": { "responses": { "200": { "description": "ok" } } } },
            "/event": { "get": { "operationId": "getEvent", "responses": { "200": { "description": "ok" } } } }
        }
    });
    let e = normalise(&mut doc).unwrap_err();
    assert!(e.contains("are both named `getEvent`"), "{e}");
}

/// NHN's document, when `HELSEID_NHN_CPAPI_SPEC` names it (see tests/cpapi_contract.rs).
fn nhn_document() -> Option<Value> {
    let Some(path) = std::env::var_os("HELSEID_NHN_CPAPI_SPEC") else {
        eprintln!("skipped: HELSEID_NHN_CPAPI_SPEC is not set (it names NHN's published document)");
        return None;
    };
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    Some(serde_json::from_str(&text).expect("JSON"))
}

#[test]
fn nhns_document_as_published_is_made_generatable_with_the_same_names() {
    let Some(mut nhn) = nhn_document() else {
        return;
    };
    let notes = normalise(&mut nhn).unwrap();
    assert_generatable(&nhn);
    // The names made up are exactly cpapi.json's.
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../openapi/cpapi.json"
    ))
    .unwrap();
    let ours: Value = serde_json::from_str(&text).unwrap();
    let names = |doc: &Value| -> Vec<(String, String)> {
        operations(doc)
            .into_iter()
            .map(|(op, operation)| (op, operation["operationId"].as_str().unwrap().to_owned()))
            .collect()
    };
    assert_eq!(names(&nhn), names(&ours));
    assert_eq!(names(&nhn).len(), 11);
    assert_eq!(notes.iter().filter(|n| n.contains(": named `")).count(), 11);
}

/// The .NET traps of NHN's other documents, one each: a one-item `allOf` wrapper with
/// `nullable`, an unnamed and a named integer enum, a dotted schema name, an operation
/// id with spaces and dashes, a required header with a default, a form body with an
/// `encoding` map, a text body holding a UUID, a multipart-only body and an operation
/// without a success response.
fn dotnet_traps() -> Value {
    json!({
        "openapi": "3.0.1",
        "info": { "title": "t", "version": "2" },
        "paths": {
            "/api/no-legal-basis/event/latest": { "get": {
                "operationId": "Event no-legal-basis",
                "parameters": [{ "name": "api-version", "in": "header", "required": true,
                                 "schema": { "type": "string", "default": "2" } }],
                "responses": { "200": { "description": "ok", "content": { "application/json": {
                    "schema": { "$ref": "#/components/schemas/Melde.DTO.Report" } } } } }
            } },
            "/Messages": { "post": {
                "requestBody": { "content": { "application/x-www-form-urlencoded": {
                    "schema": { "type": "object", "properties": { "nin": { "type": "string" } } },
                    "encoding": { "nin": { "style": "form" } } } } },
                "responses": { "201": { "description": "id", "content": { "text/plain": {
                    "schema": { "type": "string", "format": "uuid" } } } } }
            } },
            "/upload": { "post": {
                "requestBody": { "content": { "multipart/form-data": { "schema": { "type": "object" } } } },
                "responses": { "200": { "description": "ok" } }
            } },
            "/events": { "get": { "responses": { "401": { "description": "no" } } } }
        },
        "components": { "schemas": {
            "Melde.DTO.Report": { "type": "object", "required": ["Kind", "Level"], "properties": {
                "Kind": { "allOf": [{ "$ref": "#/components/schemas/Kind" }], "nullable": true },
                "Level": { "$ref": "#/components/schemas/Level" }
            } },
            "Kind": { "type": "integer", "enum": [0, 1], "x-enumNames": ["Adverse", "Near"] },
            "Level": { "enum": [1, 2], "type": "integer", "format": "int32" }
        } }
    })
}

#[test]
fn the_dotnet_traps_are_rewritten_one_line_each() {
    let mut doc = dotnet_traps();
    let mut notes = normalise(&mut doc).unwrap();
    let text = notes.join("\n");
    // The one-item wrapper is gone, and the nullable reference made optional.
    let report = &doc["components"]["schemas"]["Report"];
    assert_eq!(
        report["properties"]["Kind"],
        json!({ "$ref": "#/components/schemas/Kind" })
    );
    assert_eq!(report["required"], json!(["Level"]));
    assert!(
        text.contains("1 one-item `allOf`/`oneOf`/`anyOf` wrappers unwrapped"),
        "{text}"
    );
    // Integer enums keep their type; their names go into the description.
    let kind = &doc["components"]["schemas"]["Kind"];
    assert_eq!(kind["type"], "integer");
    assert!(kind.get("enum").is_none());
    assert_eq!(kind["description"], "Values: 0 = Adverse, 1 = Near.");
    assert_eq!(
        doc["components"]["schemas"]["Level"]["description"],
        "Values: 1 = Value1, 2 = Value2."
    );
    // The dotted name, and every reference to it.
    assert!(
        text.contains("schema `Melde.DTO.Report` renamed `Report`"),
        "{text}"
    );
    assert_eq!(
        doc["paths"]["/api/no-legal-basis/event/latest"]["get"]["responses"]["200"]["content"]["application/json"]
            ["schema"]["$ref"],
        "#/components/schemas/Report"
    );
    // Ids: one sanitised, one made up.
    assert!(
        text.contains("`Event no-legal-basis` named `EventNoLegalBasis`"),
        "{text}"
    );
    assert!(
        text.contains("POST /Messages: named `postMessages`"),
        "{text}"
    );
    // The form body loses its encoding map; the text UUID is typed.
    let post = &doc["paths"]["/Messages"]["post"];
    assert!(
        post["requestBody"]["content"]["application/x-www-form-urlencoded"]
            .get("encoding")
            .is_none()
    );
    assert_eq!(
        post["responses"]["201"]["content"]["application/json"]["schema"]["format"],
        "uuid"
    );

    // What generation does next: the headers lifted, the inexpressible left out by name.
    let left_out = normalise::leave_out_inexpressible(&mut doc);
    assert_eq!(
        left_out,
        [
            "GET /events: it declares no success response (a server-sent-events stream, say)",
            "POST /upload: its request body is multipart only (send it through the client's stack by hand)",
        ]
    );
    assert!(doc["paths"].get("/upload").is_none() && doc["paths"].get("/events").is_none());
    let lifted = normalise::lift_required_headers(&mut doc, &mut notes);
    assert_eq!(lifted, [("api-version".to_owned(), Some("2".to_owned()))]);
    assert!(
        doc["paths"]["/api/no-legal-basis/event/latest"]["get"]["parameters"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    // And the whole of it generates: a client whose methods take no api-version.
    let generated = helseid_codegen::Api::from_text("traps.json", &dotnet_traps().to_string())
        .unwrap()
        .generate_code()
        .unwrap();
    assert_eq!(generated.left_out.len(), 2);
    assert!(
        generated
            .code
            .contains("pub async fn event_no_legal_basis<'a>(\n        &'a self,\n    )"),
        "{}",
        generated.code
    );
    assert!(generated.code.contains("pub async fn post_messages"));
}
