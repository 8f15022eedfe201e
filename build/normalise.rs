//! Rewrites an OpenAPI 3.0 document into the shape progenitor can generate from.
//!
//! Real specs, such as the ones ASP.NET (Swashbuckle) servers emit, contain things
//! progenitor 0.15 rejects or panics on. This module rewrites them, on a
//! `serde_json::Value`, before generation, and says what it changed:
//!
//! - A request or response body offered in several media types (`application/json`,
//!   `text/json`, `application/*+json`) keeps one: `application/json` when offered, else
//!   the first JSON media type, else the first (progenitor panics on more than one).
//! - A response body in a JSON media type other than `application/json`
//!   (`application/problem+json`, `text/json`) is declared `application/json`:
//!   progenitor types only `application/json` bodies and hands any other as bytes, and
//!   the generated client decodes a body as JSON whatever its `Content-Type`. Request
//!   bodies keep their media type: it is the `Content-Type` the client sends.
//! - An operation whose success responses have different bodies keeps the ones like its
//!   lowest success code; one whose error responses have different bodies drops the
//!   error responses without a body, and if the rest still differ, their bodies
//!   (progenitor asserts one type per kind). Dropped responses reach the caller as
//!   unexpected responses, with their status.
//! - `additionalProperties: false` is removed: a client must not fail on a field the
//!   server adds later.
//! - String constraints (`pattern`, `minLength`, `maxLength`) are removed: progenitor
//!   would check them when decoding (`pattern` with the `regress` crate), and a client
//!   must not refuse a value the server sends; the server checks what it is sent.
//! - An operation without an `operationId` (NHN's documents have none) gets one, made up
//!   from its method and path: the method in lower case (`get`, `post`), then each
//!   literal segment of the path after a leading `/api` and `/v<digits>`, with its first
//!   letter in upper case, or in the casing of a schema of the document with the same
//!   name ignoring case (`communicationparty` reads `CommunicationParty` when there is a
//!   schema `CommunicationParty`), then `By` and each path parameter, its first letter in
//!   upper case. So `GET /api/v1/communicationparty/{herId}/legacy` is named
//!   `getCommunicationPartyLegacyByHerId` (progenitor's method:
//!   `get_communication_party_legacy_by_her_id`), and `POST /api/v1/communicationparty`
//!   `postCommunicationParty`. Two operations that would get the same name are refused:
//!   give one an `operationId`.
//!
//! Used by `build.rs` and by the tests in `tests/normalise.rs`.

use serde_json::{Map, Value};

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Normalises `doc` in place. Returns one line per change made.
///
/// # Errors
/// When `doc` is not an OpenAPI 3.0 document (progenitor reads 3.0.x only).
pub(crate) fn normalise(doc: &mut Value) -> Result<Vec<String>, String> {
    let version = doc
        .get("openapi")
        .and_then(Value::as_str)
        .ok_or("the document has no `openapi` version")?;
    if !version.starts_with("3.0.") {
        return Err(format!(
            "`openapi: {version}` is not supported: progenitor reads OpenAPI 3.0.x documents"
        ));
    }
    let mut notes = Vec::new();
    let schemas: Vec<String> = doc
        .pointer("/components/schemas")
        .and_then(Value::as_object)
        .map(|schemas| schemas.keys().cloned().collect())
        .unwrap_or_default();
    let mut names = Vec::new();
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for (path, item) in paths.iter_mut() {
            for method in METHODS {
                if let Some(op) = item.get_mut(method).and_then(Value::as_object_mut) {
                    let name = format!("{} {path}", method.to_uppercase());
                    if !op.contains_key("operationId") {
                        let id = operation_id(method, path, &schemas);
                        notes.push(format!("{name}: named `{id}`"));
                        op.insert("operationId".to_owned(), Value::String(id));
                    }
                    if let Some(id) = op.get("operationId").and_then(Value::as_str) {
                        if names.iter().any(|(taken, _)| taken == id) {
                            return Err(format!(
                                "{name} and {} are both named `{id}`: give one an `operationId`",
                                names
                                    .iter()
                                    .find(|(taken, _)| taken == id)
                                    .map_or("", |(_, other): &(String, String)| other.as_str())
                            ));
                        }
                        names.push((id.to_owned(), name.clone()));
                    }
                    operation(&name, op, &mut notes);
                }
            }
        }
    }
    remove_closed_objects(doc, &mut notes);
    remove_string_constraints(doc, &mut notes);
    Ok(notes)
}

/// The name of the operation `method path` (see the module's docs); `schemas` are the
/// document's schema names, whose casing a path segment of the same name takes.
pub(crate) fn operation_id(method: &str, path: &str, schemas: &[String]) -> String {
    let mut segments = path.split('/').filter(|s| !s.is_empty()).peekable();
    if segments.peek() == Some(&"api") {
        segments.next();
    }
    if segments.peek().is_some_and(|s| {
        s.strip_prefix('v')
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    }) {
        segments.next();
    }
    let mut words = String::new();
    let mut by = String::new();
    for segment in segments {
        if let Some(parameter) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            by.push_str("By");
            by.push_str(&upper_first(parameter));
        } else if let Some(schema) = schemas.iter().find(|s| s.eq_ignore_ascii_case(segment)) {
            words.push_str(schema);
        } else {
            words.push_str(&upper_first(segment));
        }
    }
    format!("{}{words}{by}", method.to_lowercase())
}

fn upper_first(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

fn operation(name: &str, op: &mut Map<String, Value>, notes: &mut Vec<String>) {
    if let Some(content) = op
        .get_mut("requestBody")
        .and_then(|b| b.get_mut("content"))
        .and_then(Value::as_object_mut)
    {
        one_media_type(&format!("{name} request body"), content, notes);
    }
    let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else {
        return;
    };
    for (status, response) in responses.iter_mut() {
        if let Some(content) = response.get_mut("content").and_then(Value::as_object_mut) {
            let what = format!("{name} response {status}");
            one_media_type(&what, content, notes);
            json_as_application_json(&what, content, notes);
        }
    }
    one_success_type(name, responses, notes);
    one_error_type(name, responses, notes);
}

/// Keeps one media type of a body offered in several.
fn one_media_type(what: &str, content: &mut Map<String, Value>, notes: &mut Vec<String>) {
    if content.len() <= 1 {
        return;
    }
    let keep = if content.contains_key("application/json") {
        "application/json".to_owned()
    } else {
        content
            .keys()
            .find(|k| is_json(k))
            .or_else(|| content.keys().next())
            .cloned()
            .unwrap_or_default()
    };
    let dropped: Vec<String> = content.keys().filter(|k| **k != keep).cloned().collect();
    content.retain(|k, _| *k == keep);
    notes.push(format!(
        "{what}: kept `{keep}`, dropped {}",
        dropped
            .iter()
            .map(|d| format!("`{d}`"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
}

/// Declares a (single) JSON body of another JSON media type as `application/json`.
fn json_as_application_json(what: &str, content: &mut Map<String, Value>, notes: &mut Vec<String>) {
    let Some(media_type) = content.keys().next().cloned() else {
        return;
    };
    if content.len() != 1 || !is_json(&media_type) || is_application_json(&media_type) {
        return;
    }
    if let Some(media) = content.remove(&media_type) {
        content.insert("application/json".to_owned(), media);
        notes.push(format!(
            "{what}: `{media_type}` read as `application/json` (progenitor types no other)"
        ));
    }
}

/// `application/json`, with or without parameters: what progenitor types.
fn is_application_json(media_type: &str) -> bool {
    media_type.split(';').next().unwrap_or("").trim() == "application/json"
}

fn is_json(media_type: &str) -> bool {
    let essence = media_type.split(';').next().unwrap_or("").trim();
    essence.ends_with("/json") || essence.ends_with("+json")
}

fn is_success(status: &str) -> bool {
    status.starts_with('2')
}

fn is_error(status: &str) -> bool {
    status.starts_with('4') || status.starts_with('5') || status == "default"
}

/// What a response decodes to: its (single) body schema, or `None`.
fn body_type(response: &Value) -> Option<Value> {
    let content = response.get("content")?.as_object()?;
    let (_, media) = content.iter().next()?;
    Some(media.get("schema").cloned().unwrap_or(Value::Null))
}

fn distinct_types<'a>(responses: impl Iterator<Item = &'a Value>) -> usize {
    let mut seen: Vec<Option<Value>> = Vec::new();
    for response in responses {
        let t = body_type(response);
        if !seen.contains(&t) {
            seen.push(t);
        }
    }
    seen.len()
}

fn one_success_type(name: &str, responses: &mut Map<String, Value>, notes: &mut Vec<String>) {
    if distinct_types(
        responses
            .iter()
            .filter(|(s, _)| is_success(s))
            .map(|(_, r)| r),
    ) <= 1
    {
        return;
    }
    let Some(first) = responses.keys().filter(|s| is_success(s)).min().cloned() else {
        return;
    };
    let keep = responses.get(&first).and_then(body_type);
    let dropped: Vec<String> = responses
        .iter()
        .filter(|(s, r)| is_success(s) && body_type(r) != keep)
        .map(|(s, _)| s.clone())
        .collect();
    responses.retain(|s, _| !dropped.contains(s));
    notes.push(format!(
        "{name}: success responses {} dropped: their bodies differ from {first}'s",
        dropped.join(", ")
    ));
}

fn one_error_type(name: &str, responses: &mut Map<String, Value>, notes: &mut Vec<String>) {
    let count = |responses: &Map<String, Value>| {
        distinct_types(
            responses
                .iter()
                .filter(|(s, _)| is_error(s))
                .map(|(_, r)| r),
        )
    };
    if count(responses) <= 1 {
        return;
    }
    let bodiless: Vec<String> = responses
        .iter()
        .filter(|(s, r)| is_error(s) && body_type(r).is_none())
        .map(|(s, _)| s.clone())
        .collect();
    if !bodiless.is_empty() {
        responses.retain(|s, _| !bodiless.contains(s));
        notes.push(format!(
            "{name}: error responses without a body ({}) dropped: other error responses have one",
            bodiless.join(", ")
        ));
    }
    if count(responses) <= 1 {
        return;
    }
    let mut stripped = Vec::new();
    for (status, response) in responses.iter_mut().filter(|(s, _)| is_error(s)) {
        if let Some(r) = response.as_object_mut() {
            r.remove("content");
            stripped.push(status.clone());
        }
    }
    notes.push(format!(
        "{name}: error responses {} have different bodies: their bodies are left untyped",
        stripped.join(", ")
    ));
}

/// Calls `visit` with every object in `value` and its JSON pointer, parents first.
fn each_object(at: &str, value: &mut Value, visit: &mut impl FnMut(&str, &mut Map<String, Value>)) {
    match value {
        Value::Object(map) => {
            visit(if at.is_empty() { "/" } else { at }, map);
            for (key, child) in map.iter_mut() {
                each_object(&format!("{at}/{}", pointer_escape(key)), child, visit);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter_mut().enumerate() {
                each_object(&format!("{at}/{i}"), child, visit);
            }
        }
        _ => {}
    }
}

/// Removes `additionalProperties: false` everywhere in the document.
fn remove_closed_objects(doc: &mut Value, notes: &mut Vec<String>) {
    each_object("", doc, &mut |at, map| {
        if map.get("additionalProperties") == Some(&Value::Bool(false)) {
            map.remove("additionalProperties");
            notes.push(format!("{at}: removed `additionalProperties: false`"));
        }
    });
}

/// Removes `pattern`, `minLength` and `maxLength` from the string schemas of the
/// document (those of its parameters and bodies, and its components).
fn remove_string_constraints(doc: &mut Value, notes: &mut Vec<String>) {
    each_object("", doc, &mut |at, map| {
        if map.get("type").and_then(Value::as_str) != Some("string") {
            return;
        }
        let removed: Vec<String> = ["pattern", "minLength", "maxLength"]
            .into_iter()
            .filter(|key| map.remove(*key).is_some())
            .map(|key| format!("`{key}`"))
            .collect();
        if !removed.is_empty() {
            notes.push(format!("{at}: removed {}", removed.join(", ")));
        }
    });
}

/// Escapes a key for a JSON pointer (RFC 6901).
fn pointer_escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}
