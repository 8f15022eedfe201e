//! Rewrites an OpenAPI 3.0 document into the shape progenitor can generate from, on a
//! `serde_json::Value`, and says what it changed, one line per change. The crate's docs
//! list every rule; each function here says which.
//!
//! Used by the crate's generation, and by the tests in `tests/normalise.rs`.

use serde_json::{Map, Value, json};

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
                    } else if let Some(given) = op.get("operationId").and_then(Value::as_str) {
                        let id = sanitise_id(given);
                        if id != given {
                            notes.push(format!("{name}: `{given}` named `{id}`"));
                            op.insert("operationId".to_owned(), Value::String(id));
                        }
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
    unwrap_single_wrappers(doc, &mut notes);
    nullable_refs(doc, &mut notes);
    integer_enums(doc, &mut notes);
    undotted_schema_names(doc, &mut notes);
    object_query_parameters(doc, &mut notes);
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
            for word in parameter.split(|c: char| !c.is_ascii_alphanumeric()) {
                by.push_str(&upper_first(word));
            }
        } else if let Some(schema) = schemas.iter().find(|s| s.eq_ignore_ascii_case(segment)) {
            words.push_str(&sanitise_id(schema));
        } else {
            for word in segment.split(|c: char| !c.is_ascii_alphanumeric()) {
                words.push_str(&upper_first(word));
            }
        }
    }
    format!("{}{words}{by}", method.to_lowercase())
}

/// `id` with its words joined: every run of characters other than ASCII letters and
/// digits (spaces, dots, dashes) ends a word, and each word but the first starts in
/// upper case (`Event no-legal-basis` is `EventNoLegalBasis`).
pub(crate) fn sanitise_id(id: &str) -> String {
    let mut words = id
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty());
    let mut out = words.next().unwrap_or("operation").to_owned();
    for word in words {
        out.push_str(&upper_first(word));
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
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
        for (media_type, media) in content.iter_mut() {
            if let Some(media) = media.as_object_mut()
                && media.remove("encoding").is_some()
            {
                notes.push(format!(
                        "{name} request body: `{media_type}` without its `encoding` map (each field sent as the media type sends it)"
                    ));
            }
        }
    }
    let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else {
        return;
    };
    for (status, response) in responses.iter_mut() {
        if let Some(content) = response.get_mut("content").and_then(Value::as_object_mut) {
            let what = format!("{name} response {status}");
            one_media_type(&what, content, notes);
            json_as_application_json(&what, content, notes);
            text_as_string(&what, content, notes);
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
            .or_else(|| {
                content
                    .keys()
                    .find(|k| k.starts_with("application/x-www-form-urlencoded"))
            })
            .or_else(|| content.keys().find(|k| !k.starts_with("multipart/")))
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

/// Declares a (single) `text/plain` body of a string schema (a UUID, say) as
/// `application/json`: progenitor types no other, and helseid's client reads a bare
/// string as well as a quoted one.
fn text_as_string(what: &str, content: &mut Map<String, Value>, notes: &mut Vec<String>) {
    let Some(media_type) = content.keys().next().cloned() else {
        return;
    };
    if content.len() != 1 || !media_type.starts_with("text/plain") {
        return;
    }
    let is_string = content
        .get(&media_type)
        .and_then(|m| m.pointer("/schema/type"))
        .and_then(Value::as_str)
        == Some("string");
    if !is_string {
        return;
    }
    if let Some(media) = content.remove(&media_type) {
        content.insert("application/json".to_owned(), media);
        notes.push(format!(
            "{what}: `{media_type}` string typed (read bare or quoted)"
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
        let Some(kind) = map.get("type").and_then(Value::as_str).map(str::to_owned) else {
            return;
        };
        if kind != "string" {
            if map.get("pattern").is_some_and(Value::is_string) {
                map.remove("pattern");
                notes.push(format!("{at}: removed `pattern` (on a {kind})"));
            }
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

/// Unwraps a one-item `allOf`, `oneOf` or `anyOf` into its one schema (Swashbuckle wraps
/// every `$ref` that has a description or a default so). A `$ref` keeps only `nullable`
/// beside it (see [`nullable_refs`]); an inline schema takes the wrapper's other keys.
fn unwrap_single_wrappers(doc: &mut Value, notes: &mut Vec<String>) {
    let mut count = 0;
    each_object("", doc, &mut |_, map| {
        for key in ["allOf", "oneOf", "anyOf"] {
            let single = map
                .get(key)
                .and_then(Value::as_array)
                .is_some_and(|items| items.len() == 1);
            if !single {
                continue;
            }
            let Some(Value::Array(mut items)) = map.remove(key) else {
                continue;
            };
            let Some(Value::Object(inner)) = items.pop() else {
                continue;
            };
            if inner.contains_key("$ref") {
                let nullable = map.get("nullable").cloned();
                map.clear();
                map.extend(inner);
                if let Some(nullable) = nullable {
                    map.insert("nullable".to_owned(), nullable);
                }
            } else {
                for (k, v) in inner {
                    map.entry(k).or_insert(v);
                }
            }
            count += 1;
        }
    });
    if count > 0 {
        notes.push(format!(
            "{count} one-item `allOf`/`oneOf`/`anyOf` wrappers unwrapped into their schema"
        ));
    }
}

/// A property whose schema is a `$ref` with `nullable: true` is taken out of its
/// object's `required` list, so a `null` decodes (as `None`); `nullable` beside any
/// other `$ref` is dropped (OpenAPI 3.0 ignores keys beside a `$ref`).
fn nullable_refs(doc: &mut Value, notes: &mut Vec<String>) {
    each_object("", doc, &mut |at, map| {
        let nullable_props: Vec<String> = map
            .get("properties")
            .and_then(Value::as_object)
            .map(|props| {
                props
                    .iter()
                    .filter(|(_, p)| {
                        p.get("$ref").is_some() && p.get("nullable") == Some(&Value::Bool(true))
                    })
                    .map(|(name, _)| name.clone())
                    .collect()
            })
            .unwrap_or_default();
        if nullable_props.is_empty() {
            return;
        }
        if let Some(required) = map.get_mut("required").and_then(Value::as_array_mut) {
            let before = required.len();
            required.retain(|r| {
                r.as_str()
                    .is_none_or(|r| !nullable_props.iter().any(|p| p == r))
            });
            if required.len() != before {
                notes.push(format!(
                    "{at}: nullable `$ref` properties made optional ({})",
                    nullable_props.join(", ")
                ));
            }
        }
    });
    each_object("", doc, &mut |_, map| {
        if map.contains_key("$ref") && map.len() > 1 {
            map.retain(|k, _| k == "$ref");
        }
    });
}

/// An integer schema with an `enum` keeps its integer type; the values, named from
/// `x-enumNames` where present and `Value<n>` where not, go into its description.
fn integer_enums(doc: &mut Value, notes: &mut Vec<String>) {
    each_object("", doc, &mut |at, map| {
        let integers = map
            .get("enum")
            .and_then(Value::as_array)
            .is_some_and(|values| !values.is_empty() && values.iter().all(Value::is_i64));
        let typed = matches!(
            map.get("type").and_then(Value::as_str),
            None | Some("integer") | Some("number")
        );
        if !integers || !typed {
            return;
        }
        let Some(Value::Array(values)) = map.remove("enum") else {
            return;
        };
        let names: Vec<String> = map
            .remove("x-enumNames")
            .and_then(|n| serde_json::from_value(n).ok())
            .unwrap_or_default();
        let listed: Vec<String> = values
            .iter()
            .enumerate()
            .map(|(i, v)| match names.get(i) {
                Some(name) => format!("{v} = {name}"),
                None => format!("{v} = Value{v}"),
            })
            .collect();
        map.entry("type").or_insert_with(|| json!("integer"));
        let description = match map.get("description").and_then(Value::as_str) {
            Some(d) => format!("{d}\n\nValues: {}.", listed.join(", ")),
            None => format!("Values: {}.", listed.join(", ")),
        };
        map.insert("description".to_owned(), Value::String(description));
        notes.push(format!(
            "{at}: integer enum kept as an integer ({})",
            listed.join(", ")
        ));
    });
}

/// Schemas named with dots (`Melde.DTO.Response.BaseRespons`) are renamed to their last
/// segment where no other schema ends so, else with the dots dropped; every `$ref`
/// follows.
fn undotted_schema_names(doc: &mut Value, notes: &mut Vec<String>) {
    let Some(schemas) = doc
        .pointer("/components/schemas")
        .and_then(Value::as_object)
    else {
        return;
    };
    let names: Vec<String> = schemas.keys().cloned().collect();
    let last = |name: &str| name.rsplit('.').next().unwrap_or(name).to_owned();
    let mut renames: Vec<(String, String)> = Vec::new();
    for name in names.iter().filter(|n| n.contains('.')) {
        let short = last(name);
        let unique = names.iter().filter(|n| last(n) == short).count() == 1
            && !renames.iter().any(|(_, taken)| *taken == short);
        let new = if unique { short } else { name.replace('.', "") };
        renames.push((name.clone(), new));
    }
    if renames.is_empty() {
        return;
    }
    if let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        let old = std::mem::take(schemas);
        for (name, schema) in old {
            let new = renames
                .iter()
                .find(|(from, _)| *from == name)
                .map_or(name, |(_, to)| to.clone());
            schemas.insert(new, schema);
        }
    }
    each_object("", doc, &mut |_, map| {
        if let Some(Value::String(reference)) = map.get_mut("$ref")
            && let Some(name) = reference.strip_prefix("#/components/schemas/")
            && let Some((_, to)) = renames.iter().find(|(from, _)| from == name)
        {
            *reference = format!("#/components/schemas/{to}");
        }
    });
    for (from, to) in renames {
        notes.push(format!("schema `{from}` renamed `{to}`"));
    }
}

/// A query parameter of an object type (a `$ref` to an object schema, or an inline
/// object) is taken as a string: progenitor serialises no object into a query, and the
/// caller sends its form (its JSON, say) as the API expects.
fn object_query_parameters(doc: &mut Value, notes: &mut Vec<String>) {
    let components = doc
        .pointer("/components/schemas")
        .cloned()
        .unwrap_or(Value::Null);
    let is_object = |schema: &Value| -> bool {
        let resolved = match schema.get("$ref").and_then(Value::as_str) {
            Some(r) => r
                .strip_prefix("#/components/schemas/")
                .and_then(|n| components.get(n))
                .unwrap_or(&Value::Null),
            None => schema,
        };
        resolved.get("type").and_then(Value::as_str) == Some("object")
            || resolved.get("properties").is_some()
    };
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        for method in METHODS {
            let Some(parameters) = item
                .get_mut(method)
                .and_then(|op| op.get_mut("parameters"))
                .and_then(Value::as_array_mut)
            else {
                continue;
            };
            for parameter in parameters.iter_mut() {
                if parameter.get("in").and_then(Value::as_str) != Some("query") {
                    continue;
                }
                if parameter.get("schema").is_some_and(is_object) {
                    let name = parameter
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned();
                    parameter["schema"] = json!({ "type": "string" });
                    notes.push(format!(
                        "{} {path}: query parameter `{name}` of an object type taken as a string",
                        method.to_uppercase()
                    ));
                }
            }
        }
    }
}

/// Every operation of `doc`: its method (lower case) and path.
pub(crate) fn operations(doc: &Value) -> Vec<(String, String)> {
    let mut found = Vec::new();
    if let Some(paths) = doc.get("paths").and_then(Value::as_object) {
        for (path, item) in paths {
            for method in METHODS {
                if item.get(method).is_some() {
                    found.push((method.to_owned(), path.clone()));
                }
            }
        }
    }
    found
}

/// Removes the operation `method path` (and its path, when nothing is left of it).
pub(crate) fn remove_operation(doc: &mut Value, method: &str, path: &str) {
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut)
        && let Some(item) = paths.get_mut(path).and_then(Value::as_object_mut)
    {
        item.remove(method);
        if !METHODS.iter().any(|m| item.contains_key(*m)) {
            paths.remove(path);
        }
    }
}

/// Removes every operation but `method path`.
pub(crate) fn keep_only_operation(doc: &mut Value, method: &str, path: &str) {
    for (m, p) in operations(doc) {
        if m != method || p != path {
            remove_operation(doc, &m, &p);
        }
    }
}

/// Leaves out the operations progenitor cannot express, and says which and why (one
/// line each): a request body offered only as multipart, a server-sent-events stream, no
/// success response.
pub(crate) fn leave_out_inexpressible(doc: &mut Value) -> Vec<String> {
    let mut left_out = Vec::new();
    for (method, path) in operations(doc) {
        let Some(op) = doc.pointer(&format!("/paths/{}/{method}", pointer_escape(&path))) else {
            continue;
        };
        let name = format!("{} {path}", method.to_uppercase());
        let multipart = op
            .pointer("/requestBody/content")
            .and_then(Value::as_object)
            .is_some_and(|c| !c.is_empty() && c.keys().all(|k| k.starts_with("multipart/")));
        let responses = op.get("responses").and_then(Value::as_object);
        let event_stream = responses.is_some_and(|r| {
            r.values().any(|r| {
                r.get("content")
                    .and_then(Value::as_object)
                    .is_some_and(|c| c.keys().any(|k| k.starts_with("text/event-stream")))
            })
        });
        let success = responses.is_some_and(|r| r.keys().any(|s| is_success(s) || s == "default"));
        let why = if multipart {
            "its request body is multipart only (send it through the client's stack by hand)"
        } else if event_stream {
            "it answers a server-sent-events stream"
        } else if !success {
            "it declares no success response (a server-sent-events stream, say)"
        } else {
            continue;
        };
        left_out.push(format!("{name}: {why}"));
        remove_operation(doc, &method, &path);
    }
    left_out
}

/// Takes the required header parameters out of every operation, to be set once on the
/// client; returns each header's name (lower case) and its schema's default, if any.
pub(crate) fn lift_required_headers(
    doc: &mut Value,
    notes: &mut Vec<String>,
) -> Vec<(String, Option<String>)> {
    let mut lifted: Vec<(String, Option<String>)> = Vec::new();
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return lifted;
    };
    for item in paths.values_mut() {
        let mut lists: Vec<&mut Value> = Vec::new();
        if let Some(item) = item.as_object_mut() {
            for (key, value) in item.iter_mut() {
                if key == "parameters" {
                    lists.push(value);
                } else if METHODS.contains(&key.as_str())
                    && let Some(parameters) = value.get_mut("parameters")
                {
                    lists.push(parameters);
                }
            }
        }
        for list in lists {
            let Some(parameters) = list.as_array_mut() else {
                continue;
            };
            parameters.retain(|p| {
                let header = p.get("in").and_then(Value::as_str) == Some("header")
                    && p.get("required") == Some(&Value::Bool(true));
                if !header {
                    return true;
                }
                let name = p
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_ascii_lowercase();
                let default = p.pointer("/schema/default").map(|d| match d {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                });
                if !lifted.iter().any(|(n, _)| *n == name) {
                    lifted.push((name, default));
                }
                false
            });
        }
    }
    for (name, default) in &lifted {
        notes.push(match default {
            Some(d) => format!(
                "required header `{name}` set once on the client (the document's default: `{d}`)"
            ),
            None => format!("required header `{name}` set once on the client"),
        });
    }
    lifted
}

/// Removes the error responses (4xx, 5xx; `default` when a success is declared) of
/// every operation: each reaches the caller as `helseid::typed::Error`, with its status
/// and its body (problem details decoded), whatever the document declares.
pub(crate) fn untyped_errors(doc: &mut Value, notes: &mut Vec<String>) {
    let mut count = 0;
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for item in paths.values_mut() {
            for method in METHODS {
                let Some(responses) = item
                    .get_mut(method)
                    .and_then(|op| op.get_mut("responses"))
                    .and_then(Value::as_object_mut)
                else {
                    continue;
                };
                let success = responses.keys().any(|s| is_success(s));
                let before = responses.len();
                responses.retain(|s, _| {
                    !(s.starts_with('4') || s.starts_with('5') || (success && s == "default"))
                });
                if responses.len() != before {
                    count += 1;
                }
            }
        }
    }
    if count > 0 {
        notes.push(format!(
            "error responses of {count} operations read as helseid::typed::Error (status, body, problem details), not typed per operation"
        ));
    }
}
