//! The OpenAPI normalisation build.rs applies before progenitor generates a client.

#[allow(dead_code)]
#[path = "../build/normalise.rs"]
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
        "paths": { "/x": { "get": { "responses": {
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
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/cpe.json")).unwrap();
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

#[test]
fn the_shipped_cpapi_document_gets_typed_bodies() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/cpapi.json"))
        .unwrap();
    let mut doc: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["openapi"], "3.0.4");
    let notes = normalise(&mut doc).unwrap();
    // Every body left is `application/json`, which progenitor types.
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (status, response) in item["get"]["responses"].as_object().unwrap() {
            if let Some(content) = response.get("content") {
                assert_eq!(
                    media_types(content),
                    ["application/json"],
                    "{path} {status}"
                );
            }
        }
    }
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    assert!(
        schemas
            .values()
            .all(|s| s.get("additionalProperties") != Some(&json!(false)))
    );
    // ProblemDetails stays open for its extensions.
    assert_eq!(schemas["ProblemDetails"]["additionalProperties"], json!({}));
    let mut notes = notes;
    notes.sort();
    assert_eq!(
        notes,
        [
            "/components/schemas/CommunicationParty: removed `additionalProperties: false`",
            "/components/schemas/CommunicationPartyExport: removed `additionalProperties: false`",
            "/components/schemas/Event: removed `additionalProperties: false`",
            "/components/schemas/EventsResponse: removed `additionalProperties: false`",
            "GET /api/v1/communicationparty/export response 200: kept `application/json`, dropped `text/json`, `text/plain`",
            "GET /api/v1/communicationparty/{herId} response 200: kept `application/json`, dropped `text/json`, `text/plain`",
            "GET /api/v1/communicationparty/{herId} response 400: `application/problem+json` read as `application/json` (progenitor types no other)",
            "GET /api/v1/communicationparty/{herId} response 404: `application/problem+json` read as `application/json` (progenitor types no other)",
            "GET /api/v1/communicationparty/{herId}: error responses without a body (401) dropped: other error responses have one",
            "GET /api/v1/event response 200: kept `application/json`, dropped `text/json`, `text/plain`",
            "GET /api/v1/event response 400: `application/problem+json` read as `application/json` (progenitor types no other)",
            "GET /api/v1/event/latest response 200: kept `application/json`, dropped `text/json`, `text/plain`",
            "GET /api/v1/event/latest response 404: `application/problem+json` read as `application/json` (progenitor types no other)",
            "GET /api/v1/event/latest: error responses without a body (401) dropped: other error responses have one",
            "GET /api/v1/event: error responses without a body (401) dropped: other error responses have one",
        ]
    );
}
