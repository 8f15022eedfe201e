//! The emulator's CPE OpenAPI document (utoipa, served at `/openapi.json`) held against
//! the contract, `openapi/cpe.json`.
//!
//! Compared: the operations (path and method) and their `operationId`s; their parameters
//! (name, `in`, `required`, schema type and format); the responses cpe.json lists (each
//! must be in the emulator's document with the same media types and schemas; the
//! emulator may document more, such as its 400 for a malformed `herId`); the security
//! each operation needs; every schema in cpe.json's components (its type, property
//! names, `required` list, and each property's type and format, `$ref`s compared by the
//! name they point to), and no schema the contract lacks; the security schemes.
//! Nullability is compared after normalising OpenAPI 3.0 (`nullable: true`) and 3.1
//! (`type: [.., "null"]`, `oneOf`/`anyOf` with a `null` type) to one form. Descriptions,
//! examples, tags, servers and `info` are not compared.
#![cfg(feature = "emulator")]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::{Value, json};

use helseid::emulator::Emulator;
use support::get_json;

/// How the two documents are named in differences.
const CONTRACT: &str = "cpe.json";
const SERVED: &str = "the emulator's document";

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// `openapi/cpe.json`.
fn contract() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/cpe.json");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path} is not JSON: {e}"))
}

/// The document a running emulator serves at `/openapi.json`.
async fn served() -> Value {
    let emulator = Emulator::builder().start().await.expect("emulator starts");
    let doc = get_json(&format!("{}/openapi.json", emulator.cpe_base_url())).await;
    emulator.shutdown().await;
    doc
}

/// A schema reduced to what the comparison looks at.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Shape {
    /// A `$ref`, by the name it points to.
    Ref(String),
    Array(Box<Shape>),
    Type {
        ty: String,
        format: Option<String>,
    },
    /// The `null` type alone (a member of a nullable `oneOf`).
    Null,
    /// `oneOf`/`anyOf`/`allOf` of several non-null members, or several types.
    Composite(String, Vec<Shape>),
    /// No type at all.
    Any,
}

/// A schema's shape and whether it admits `null`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Norm {
    shape: Shape,
    nullable: bool,
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Shape::Ref(name) => write!(f, "$ref {name}"),
            Shape::Array(items) => write!(f, "array of {items}"),
            Shape::Type { ty, format: None } => write!(f, "{ty}"),
            Shape::Type {
                ty,
                format: Some(format),
            } => write!(f, "{ty} ({format})"),
            Shape::Null => write!(f, "null"),
            Shape::Composite(kind, members) => {
                let members: Vec<String> = members.iter().map(ToString::to_string).collect();
                write!(f, "{kind} [{}]", members.join(", "))
            }
            Shape::Any => write!(f, "any"),
        }
    }
}

impl fmt::Display for Norm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nullable {
            write!(f, "nullable ")?;
        }
        write!(f, "{}", self.shape)
    }
}

/// The last segment of a `$ref`: `#/components/schemas/Period` -> `Period`.
fn ref_name(reference: &str) -> String {
    reference.rsplit('/').next().unwrap_or(reference).to_owned()
}

/// Normalises a schema: 3.0's `nullable: true`, 3.1's `type: [T, "null"]` and a
/// `oneOf`/`anyOf`/`allOf` of one schema and the `null` type all become `nullable`.
fn normalise(schema: &Value) -> Norm {
    let mut nullable = schema.get("nullable") == Some(&Value::Bool(true));
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        return Norm {
            shape: Shape::Ref(ref_name(reference)),
            nullable,
        };
    }
    for kind in ["oneOf", "anyOf", "allOf"] {
        if let Some(members) = schema.get(kind).and_then(Value::as_array) {
            let mut shapes = Vec::new();
            for member in members.iter().map(normalise) {
                nullable |= member.nullable;
                if member.shape == Shape::Null {
                    nullable = true;
                } else {
                    shapes.push(member.shape);
                }
            }
            let shape = if shapes.len() == 1 {
                shapes.remove(0)
            } else {
                Shape::Composite(kind.to_owned(), shapes)
            };
            return Norm { shape, nullable };
        }
    }
    let types: Vec<&str> = match schema.get("type") {
        Some(Value::String(ty)) => vec![ty.as_str()],
        Some(Value::Array(types)) => types.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let has_null = types.contains(&"null");
    nullable |= has_null;
    let types: Vec<&str> = types.into_iter().filter(|ty| *ty != "null").collect();
    let format = schema
        .get("format")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let shape = match types.as_slice() {
        [] if has_null => Shape::Null,
        [] => Shape::Any,
        ["array"] => Shape::Array(Box::new(
            schema
                .get("items")
                .map_or(Shape::Any, |items| normalise(items).shape),
        )),
        [ty] => Shape::Type {
            ty: (*ty).to_owned(),
            format,
        },
        many => Shape::Composite(
            "type".to_owned(),
            many.iter()
                .map(|ty| Shape::Type {
                    ty: (*ty).to_owned(),
                    format: format.clone(),
                })
                .collect(),
        ),
    };
    Norm { shape, nullable }
}

/// Reports names in one set but not the other: `what` gets the name, then the verdict.
fn one_sided<'a>(
    contract: impl IntoIterator<Item = &'a String>,
    served: impl IntoIterator<Item = &'a String>,
    what: impl Fn(&str) -> String,
    found: &mut Vec<String>,
) -> BTreeSet<String> {
    let contract: BTreeSet<String> = contract.into_iter().cloned().collect();
    let served: BTreeSet<String> = served.into_iter().cloned().collect();
    for name in contract.union(&served) {
        match (contract.contains(name), served.contains(name)) {
            (true, false) => found.push(format!(
                "{} is in {CONTRACT}, missing from {SERVED}",
                what(name)
            )),
            (false, true) => {
                found.push(format!("{} is in {SERVED}, not in {CONTRACT}", what(name)))
            }
            _ => {}
        }
    }
    contract.intersection(&served).cloned().collect()
}

/// Reports a value that differs: `what` is `X is`, then both values.
fn differs(what: &str, contract: impl fmt::Display, served: impl fmt::Display) -> String {
    format!("{what} is {contract} in {CONTRACT}, {served} in {SERVED}")
}

/// Every operation: `METHOD /path` -> (path item, operation).
fn operations(doc: &Value) -> BTreeMap<String, (&Value, &Value)> {
    let mut operations = BTreeMap::new();
    if let Some(paths) = doc.get("paths").and_then(Value::as_object) {
        for (path, item) in paths {
            for method in METHODS {
                if let Some(operation) = item.get(method) {
                    operations.insert(
                        format!("{} {path}", method.to_uppercase()),
                        (item, operation),
                    );
                }
            }
        }
    }
    operations
}

/// Follows a local `$ref` (`#/components/parameters/X`) once.
fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(reference) => reference
            .strip_prefix('#')
            .and_then(|pointer| doc.pointer(pointer))
            .unwrap_or(value),
        None => value,
    }
}

/// An operation's parameters, path-level ones included: `name (in)` -> parameter.
fn parameters<'a>(
    doc: &'a Value,
    item: &'a Value,
    operation: &'a Value,
) -> BTreeMap<String, &'a Value> {
    let mut parameters = BTreeMap::new();
    for list in [item.get("parameters"), operation.get("parameters")] {
        for parameter in list.and_then(Value::as_array).into_iter().flatten() {
            let parameter = resolve(doc, parameter);
            let name = parameter["name"].as_str().unwrap_or_default();
            let location = parameter["in"].as_str().unwrap_or_default();
            parameters.insert(format!("`{name}` ({location})"), parameter);
        }
    }
    parameters
}

/// The security an operation needs: the names of its schemes (the operation's own
/// `security`, or the document's).
fn security(doc: &Value, operation: &Value) -> String {
    let requirements = operation
        .get("security")
        .or_else(|| doc.get("security"))
        .and_then(Value::as_array);
    let names: BTreeSet<String> = requirements
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
        .flat_map(|requirement| requirement.keys().cloned())
        .collect();
    format!("[{}]", names.into_iter().collect::<Vec<_>>().join(", "))
}

/// Every difference between the contract and the served document, in a stable order:
/// operations (first those on one side only, then the differences of each common one,
/// by method and path), then schemas (likewise, by name), then security schemes.
fn drift(contract: &Value, served: &Value) -> Vec<String> {
    let mut found = Vec::new();

    let (contract_ops, served_ops) = (operations(contract), operations(served));
    let common = one_sided(
        contract_ops.keys(),
        served_ops.keys(),
        str::to_owned,
        &mut found,
    );
    for key in &common {
        let ((c_item, c_op), (s_item, s_op)) = (contract_ops[key], served_ops[key]);
        if c_op.get("operationId") != s_op.get("operationId") {
            found.push(differs(
                &format!("{key}: operationId"),
                &c_op["operationId"],
                &s_op["operationId"],
            ));
        }

        let (c_params, s_params) = (
            parameters(contract, c_item, c_op),
            parameters(served, s_item, s_op),
        );
        let common = one_sided(
            c_params.keys(),
            s_params.keys(),
            |name| format!("{key}: parameter {name}"),
            &mut found,
        );
        for name in &common {
            let (c, s) = (c_params[name], s_params[name]);
            let required = |p: &Value| p.get("required").and_then(Value::as_bool).unwrap_or(false);
            if required(c) != required(s) {
                found.push(differs(
                    &format!("{key}: parameter {name}: required"),
                    required(c),
                    required(s),
                ));
            }
            let (c_schema, s_schema) = (normalise(&c["schema"]), normalise(&s["schema"]));
            if c_schema != s_schema {
                found.push(differs(
                    &format!("{key}: parameter {name}: schema"),
                    c_schema,
                    s_schema,
                ));
            }
        }

        let empty = serde_json::Map::new();
        let responses = |op: &'_ Value| {
            op.get("responses")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_else(|| empty.clone())
        };
        let (c_responses, s_responses) = (responses(c_op), responses(s_op));
        for (status, c_response) in &c_responses {
            let Some(s_response) = s_responses.get(status) else {
                found.push(format!(
                    "{key}: response {status} is in {CONTRACT}, missing from {SERVED}"
                ));
                continue;
            };
            let content = |response: &Value| -> BTreeMap<String, Norm> {
                response
                    .get("content")
                    .and_then(Value::as_object)
                    .into_iter()
                    .flatten()
                    .map(|(media, body)| (media.clone(), normalise(&body["schema"])))
                    .collect()
            };
            let (c_content, s_content) = (content(c_response), content(s_response));
            let common = one_sided(
                c_content.keys(),
                s_content.keys(),
                |media| format!("{key}: response {status}: content {media}"),
                &mut found,
            );
            for media in &common {
                if c_content[media] != s_content[media] {
                    found.push(differs(
                        &format!("{key}: response {status}: {media} schema"),
                        &c_content[media],
                        &s_content[media],
                    ));
                }
            }
        }

        let (c_security, s_security) = (security(contract, c_op), security(served, s_op));
        if c_security != s_security {
            found.push(differs(&format!("{key}: security"), c_security, s_security));
        }
    }

    let schemas = |doc: &Value| {
        doc.pointer("/components/schemas")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    };
    let (c_schemas, s_schemas) = (schemas(contract), schemas(served));
    let common = one_sided(
        c_schemas.keys(),
        s_schemas.keys(),
        |name| format!("schema `{name}`"),
        &mut found,
    );
    for name in &common {
        let (c, s) = (&c_schemas[name], &s_schemas[name]);
        let (c_type, s_type) = (normalise(c), normalise(s));
        if c_type != s_type {
            found.push(differs(&format!("schema `{name}`: type"), c_type, s_type));
        }
        let required = |schema: &Value| -> BTreeSet<String> {
            schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        };
        let (c_required, s_required) = (required(c), required(s));
        if c_required != s_required {
            let list = |set: &BTreeSet<String>| {
                format!("[{}]", set.iter().cloned().collect::<Vec<_>>().join(", "))
            };
            found.push(differs(
                &format!("schema `{name}`: required"),
                list(&c_required),
                list(&s_required),
            ));
        }
        let properties = |schema: &Value| {
            schema
                .get("properties")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default()
        };
        let (c_props, s_props) = (properties(c), properties(s));
        let common = one_sided(
            c_props.keys(),
            s_props.keys(),
            |property| format!("schema `{name}`: property `{property}`"),
            &mut found,
        );
        for property in &common {
            let (c_prop, s_prop) = (normalise(&c_props[property]), normalise(&s_props[property]));
            if c_prop != s_prop {
                found.push(differs(
                    &format!("schema `{name}`: property `{property}`"),
                    c_prop,
                    s_prop,
                ));
            }
        }
    }

    let schemes = |doc: &Value| {
        doc.pointer("/components/securitySchemes")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    };
    let (c_schemes, s_schemes) = (schemes(contract), schemes(served));
    let common = one_sided(
        c_schemes.keys(),
        s_schemes.keys(),
        |name| format!("security scheme `{name}`"),
        &mut found,
    );
    for name in &common {
        for field in ["type", "scheme", "bearerFormat", "in", "name"] {
            let value = |scheme: &Value| {
                scheme
                    .get(field)
                    .and_then(Value::as_str)
                    // HTTP auth scheme names are case-insensitive.
                    .map_or_else(
                        || "absent".to_owned(),
                        |v| {
                            if field == "scheme" {
                                v.to_lowercase()
                            } else {
                                v.to_owned()
                            }
                        },
                    )
            };
            let (c, s) = (value(&c_schemes[name]), value(&s_schemes[name]));
            if c != s {
                found.push(differs(&format!("security scheme `{name}`: {field}"), c, s));
            }
        }
    }
    found
}

#[tokio::test]
async fn the_served_document_matches_cpe_json() {
    let served = served().await;
    let differences = drift(&contract(), &served);
    assert!(
        differences.is_empty(),
        "the emulator's /openapi.json drifted from openapi/cpe.json ({} differences):\n  {}",
        differences.len(),
        differences.join("\n  ")
    );
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
    let mut mutated = contract();
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
        drift(&mutated, &served),
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
    let mut mutated = contract();
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
        drift(&mutated, &served),
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
