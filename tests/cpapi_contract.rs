//! `openapi/cpapi.json` held against the document NHN publishes for its
//! CommunicationParty API v2: contract-equal, but for the prose and the additions listed
//! in `openapi/ADDITIONS.md`.
//!
//! NHN's document is read from the path in the environment variable
//! `HELSEID_NHN_CPAPI_SPEC` (relative to this package's directory; CI points it at
//! `../shared/reference/cpapi-v1-spec.reference.json`). Without it the test says that it
//! was skipped and why, and passes; with it, an unreadable file fails the test.
//!
//! The comparison is structural: both documents, without their prose (every text-valued
//! `description` and `summary`; `info`'s `title`, `description` and `license`), must be
//! the same JSON (objects by key, arrays element by element, in order), but for
//! additions at the pointers ADDITIONS.md lists. Each difference is reported by its JSON
//! pointer. The mutation tests run without NHN's document too: they hold cpapi.json
//! against a mutated copy of itself.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

/// The environment variable that holds the path of NHN's document.
const SPEC_VAR: &str = "HELSEID_NHN_CPAPI_SPEC";

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `openapi/cpapi.json`.
fn ours() -> Value {
    read_json(&manifest_dir().join("openapi/cpapi.json"))
}

/// NHN's document, or why there is none.
fn nhn() -> Result<Value, String> {
    let Some(path) = std::env::var_os(SPEC_VAR) else {
        return Err(format!(
            "{SPEC_VAR} is not set: it names NHN's published OpenAPI document of the \
             CommunicationParty API v2 (CI sets it to \
             ../shared/reference/cpapi-v1-spec.reference.json)"
        ));
    };
    Ok(read_json(&manifest_dir().join(path)))
}

/// The JSON pointer patterns of `openapi/ADDITIONS.md`'s list: each item begins with a
/// pointer in backticks.
fn additions() -> Vec<String> {
    let path = manifest_dir().join("openapi/ADDITIONS.md");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let list: Vec<String> = text
        .lines()
        .filter_map(|line| line.strip_prefix("- `"))
        .filter_map(|item| item.split_once('`'))
        .map(|(pointer, _)| pointer.to_owned())
        .collect();
    assert!(
        list.iter().all(|p| p.starts_with('/')),
        "ADDITIONS.md lists something that is not a JSON pointer: {list:?}"
    );
    list
}

/// Escapes a key for a JSON pointer (RFC 6901).
fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// Whether `pointer` is matched by `pattern` (`*` matches one segment).
fn matches(pattern: &str, pointer: &str) -> bool {
    let (pattern, pointer): (Vec<&str>, Vec<&str>) =
        (pattern.split('/').collect(), pointer.split('/').collect());
    pattern.len() == pointer.len()
        && pattern
            .iter()
            .zip(&pointer)
            .all(|(want, have)| *want == "*" || want == have)
}

/// A document without its prose.
fn without_prose(doc: &Value) -> Value {
    fn strip(value: &Value) -> Value {
        match value {
            Value::Object(map) => Value::Object(
                map.iter()
                    .filter(|(key, value)| {
                        !(matches!(key.as_str(), "description" | "summary") && value.is_string())
                    })
                    .map(|(key, value)| (key.clone(), strip(value)))
                    .collect(),
            ),
            Value::Array(items) => Value::Array(items.iter().map(strip).collect()),
            other => other.clone(),
        }
    }
    let mut doc = strip(doc);
    if let Some(info) = doc.get_mut("info").and_then(Value::as_object_mut) {
        for prose in ["title", "description", "license"] {
            info.remove(prose);
        }
    }
    doc
}

/// What the comparison found.
#[derive(Debug, Default)]
struct Report {
    /// Differences not allowed, by pointer.
    differences: Vec<String>,
    /// The pointers of the allowed additions made.
    added: Vec<String>,
}

/// Compares cpapi.json (`ours`) with NHN's document (`theirs`), allowing additions at
/// `allowed`.
fn compare(theirs: &Value, ours: &Value, allowed: &[String]) -> Report {
    let mut report = Report::default();
    walk(
        "",
        &without_prose(theirs),
        &without_prose(ours),
        allowed,
        &mut report,
    );
    report
}

fn short(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 80 {
        format!("{}…", text.chars().take(80).collect::<String>())
    } else {
        text
    }
}

fn walk(at: &str, theirs: &Value, ours: &Value, allowed: &[String], report: &mut Report) {
    match (theirs, ours) {
        (Value::Object(t), Value::Object(o)) => objects(at, t, o, allowed, report),
        (Value::Array(t), Value::Array(o)) => {
            for (i, (t, o)) in t.iter().zip(o).enumerate() {
                walk(&format!("{at}/{i}"), t, o, allowed, report);
            }
            for (i, t) in t.iter().enumerate().skip(o.len()) {
                report.differences.push(format!(
                    "{at}/{i}: missing from cpapi.json (NHN's document has {})",
                    short(t)
                ));
            }
            for (i, o) in o.iter().enumerate().skip(t.len()) {
                report.differences.push(format!(
                    "{at}/{i}: added in cpapi.json ({}), not in NHN's document",
                    short(o)
                ));
            }
        }
        _ if theirs == ours => {}
        _ => report.differences.push(format!(
            "{}: NHN's document has {}, cpapi.json has {}",
            if at.is_empty() { "/" } else { at },
            short(theirs),
            short(ours)
        )),
    }
}

fn objects(
    at: &str,
    theirs: &Map<String, Value>,
    ours: &Map<String, Value>,
    allowed: &[String],
    report: &mut Report,
) {
    for (key, t) in theirs {
        let here = format!("{at}/{}", escape(key));
        match ours.get(key) {
            Some(o) => walk(&here, t, o, allowed, report),
            None => report.differences.push(format!(
                "{here}: missing from cpapi.json (NHN's document has {})",
                short(t)
            )),
        }
    }
    for (key, o) in ours {
        if theirs.contains_key(key) {
            continue;
        }
        let here = format!("{at}/{}", escape(key));
        if allowed.iter().any(|pattern| matches(pattern, &here)) {
            report.added.push(here);
        } else {
            report.differences.push(format!(
                "{here}: added in cpapi.json ({}), not in NHN's document nor in openapi/ADDITIONS.md",
                short(o)
            ));
        }
    }
}

/// Panics with every difference, and with every listed addition that allows nothing.
fn assert_contract_equal(theirs: &Value, ours: &Value) {
    let allowed = additions();
    let report = compare(theirs, ours, &allowed);
    let unused: Vec<&String> = allowed
        .iter()
        .filter(|pattern| !report.added.iter().any(|added| matches(pattern, added)))
        .collect();
    assert!(
        report.differences.is_empty() && unused.is_empty(),
        "openapi/cpapi.json is not contract-equal to NHN's document:\n  {}\nadditions listed in \
         openapi/ADDITIONS.md that allow nothing: {unused:?}",
        report.differences.join("\n  ")
    );
}

#[test]
fn cpapi_json_is_contract_equal_to_nhns_document() {
    let theirs = match nhn() {
        Ok(doc) => doc,
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    let ours = ours();
    assert_contract_equal(&theirs, &ours);
    // And what equality rests on is really there: 11 operations, 34 schemas.
    let operations: usize = ours["paths"]
        .as_object()
        .expect("paths")
        .values()
        .map(|item| item.as_object().map_or(0, Map::len))
        .sum();
    assert_eq!(operations, 11);
    assert_eq!(
        ours["components"]["schemas"].as_object().map(Map::len),
        Some(34)
    );
}

#[test]
fn the_additions_are_listed_once_and_used() {
    let allowed = additions();
    assert_eq!(
        allowed,
        [
            "/security",
            "/components/securitySchemes",
            "/paths/*/*/responses/401",
            "/paths/*/*/responses/403",
            "/paths/*/*/operationId",
        ]
    );
    // cpapi.json without its additions is what remains to compare with NHN's document:
    // held against itself, it has exactly the 3 + 3 × 11 additions.
    let ours = ours();
    let mut bare = ours.clone();
    let root = bare.as_object_mut().expect("an object");
    root.remove("security");
    root["components"]
        .as_object_mut()
        .expect("components")
        .remove("securitySchemes");
    for item in root["paths"].as_object_mut().expect("paths").values_mut() {
        for operation in item.as_object_mut().expect("a path item").values_mut() {
            operation
                .as_object_mut()
                .expect("operation")
                .remove("operationId");
            let responses = operation["responses"].as_object_mut().expect("responses");
            responses.remove("401");
            responses.remove("403");
        }
    }
    let report = compare(&bare, &ours, &allowed);
    assert_eq!(report.differences, Vec::<String>::new());
    assert_eq!(report.added.len(), 2 + 3 * 11, "{:?}", report.added);
}

/// The differences found between `base` and cpapi.json changed by `change`.
fn mutate(base: &Value, change: impl FnOnce(&mut Value)) -> Vec<String> {
    let mut mutated = ours();
    change(&mut mutated);
    compare(base, &mutated, &additions()).differences
}

/// NHN's document when it is there, else cpapi.json: the mutations must be found against
/// either.
fn base() -> Value {
    nhn().unwrap_or_else(|_| ours())
}

#[test]
fn a_changed_type_is_caught() {
    let found = mutate(&base(), |doc| {
        doc["components"]["schemas"]["Event"]["properties"]["herId"]["type"] = json!("string");
        doc["paths"]["/api/v1/event"]["get"]["parameters"][0]["schema"]["format"] = json!("int32");
    });
    assert_eq!(
        found,
        [
            "/components/schemas/Event/properties/herId/type: NHN's document has \"integer\", cpapi.json has \"string\"",
            "/paths/~1api~1v1~1event/get/parameters/0/schema/format: NHN's document has \"int64\", cpapi.json has \"int32\"",
        ]
    );
}

#[test]
fn a_dropped_property_is_caught() {
    let found = mutate(&base(), |doc| {
        doc["components"]["schemas"]["CommunicationParty"]["properties"]
            .as_object_mut()
            .expect("properties")
            .remove("fhirAddress");
    });
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with(
            "/components/schemas/CommunicationParty/properties/fhirAddress: missing from cpapi.json"
        ),
        "{found:?}"
    );
}

#[test]
fn a_renamed_parameter_is_caught() {
    let found = mutate(&base(), |doc| {
        doc["paths"]["/api/v1/communicationparty/search"]["post"]["parameters"][1]["name"] =
            json!("PageSize");
    });
    assert_eq!(
        found,
        [
            "/paths/~1api~1v1~1communicationparty~1search/post/parameters/1/name: NHN's document has \"Size\", cpapi.json has \"PageSize\""
        ]
    );
}

#[test]
fn a_changed_required_list_is_caught() {
    let found = mutate(&base(), |doc| {
        let required = doc["components"]["schemas"]["CommunicationParty"]["required"]
            .as_array_mut()
            .expect("required");
        required.retain(|name| name != "amqpTransportStatus");
        doc["components"]["schemas"]["Event"]["required"] = json!(["sequenceNumber"]);
    });
    assert_eq!(found.len(), 4, "{found:?}");
    assert!(
        found
            .iter()
            .any(|d| d.starts_with("/components/schemas/CommunicationParty/required/0: "))
    );
    assert!(found.iter().any(|d| d.starts_with(
        "/components/schemas/CommunicationParty/required/2: missing from cpapi.json"
    )));
    assert!(found.iter().any(|d| d.starts_with(
        "/components/schemas/Event/required: added in cpapi.json ([\"sequenceNumber\"]), not in"
    )));
}

#[test]
fn an_addition_not_listed_and_a_changed_bound_are_caught() {
    let found = mutate(&base(), |doc| {
        doc["paths"]["/api/v1/event"]["get"]["responses"]["400"] =
            json!({"description": "bad", "content": {}});
        doc["paths"]["/api/v1/event"]["get"]["parameters"][1]["schema"]["maximum"] = json!(500);
        doc["components"]["schemas"]["EventsResponse"]["properties"]["count"]
            .as_object_mut()
            .expect("count")
            .remove("readOnly");
    });
    assert_eq!(
        found,
        [
            "/components/schemas/EventsResponse/properties/count/readOnly: missing from cpapi.json (NHN's document has true)",
            "/paths/~1api~1v1~1event/get/parameters/1/schema/maximum: NHN's document has 1000, cpapi.json has 500",
            "/paths/~1api~1v1~1event/get/responses/400: added in cpapi.json ({\"content\":{}}), not in NHN's document nor in openapi/ADDITIONS.md",
        ]
    );
}

#[test]
fn prose_is_not_compared() {
    let found = mutate(&base(), |doc| {
        doc["info"]["title"] = json!("another title");
        doc["paths"]["/api/v1/event"]["get"]["summary"] = json!("other words");
        doc["components"]["schemas"]["Event"]["description"] = json!("other words");
    });
    assert_eq!(found, Vec::<String>::new());
}
