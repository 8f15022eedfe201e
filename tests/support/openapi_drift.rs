//! Holds an OpenAPI document the emulator serves (utoipa, OpenAPI 3.1) against a
//! contract under `openapi/` (often OpenAPI 3.0), and lists every difference.
//!
//! Compared: the operations (path and method) and their `operationId`s; their parameters
//! (name, `in`, `required`, schema type and format, `minimum` and `maximum`); the
//! responses the contract lists (each must be in the served document with the same media
//! types and schemas; the served document may document more responses, such as a 400 for
//! a malformed parameter); the security each operation needs; every schema in the
//! contract's components (its type, `enum` values, property names, `required` list,
//! whether it is closed to other properties, and each property's type and format,
//! `$ref`s compared by the name they point to), and no schema the contract lacks; the
//! security schemes. Nullability is compared after normalising OpenAPI 3.0
//! (`nullable: true`) and 3.1 (`type: [.., "null"]`, `oneOf`/`anyOf` with a `null` type)
//! to one form. Descriptions, examples, defaults, tags, servers and `info` are not
//! compared.
//!
//! A contract may allow two deliberate differences, each named in its [`Rules`]: media
//! types the served document may leave out of a response (never add), and security
//! schemes the served document may describe another way.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::{Map, Value};

use helseid_emulator::Emulator;

/// How the served document is named in differences.
pub const SERVED: &str = "the emulator's document";

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// The fields of a security scheme that are compared.
const SCHEME_FIELDS: [&str; 5] = ["type", "scheme", "bearerFormat", "in", "name"];

/// What a contract is called, and the differences it allows.
#[derive(Clone, Copy, Debug)]
pub struct Rules {
    /// The contract's file name under `openapi/` (`cpe.json`): read from there, and
    /// named so in differences.
    pub contract: &'static str,
    /// Media types of the contract's responses that the served document may leave out
    /// (it may not offer a media type the contract lacks, and must offer at least one of
    /// the contract's for each body).
    pub optional_media_types: &'static [&'static str],
    /// Security schemes the served document may describe another way.
    pub scheme_stand_ins: &'static [SchemeStandIn],
}

/// A security scheme the served document describes another way: when the contract's
/// scheme has exactly the `contract` fields and the served one exactly the `served`
/// fields (of `type`, `scheme`, `bearerFormat`, `in` and `name`; the others absent,
/// `scheme` lower case), they are taken as the same.
#[derive(Clone, Copy, Debug)]
pub struct SchemeStandIn {
    pub name: &'static str,
    pub contract: &'static [(&'static str, &'static str)],
    pub served: &'static [(&'static str, &'static str)],
}

impl Rules {
    /// The contract, `openapi/{contract}`.
    pub fn read_contract(&self) -> Value {
        let path = format!("{}/openapi/{}", env!("CARGO_MANIFEST_DIR"), self.contract);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path} is not JSON: {e}"))
    }

    /// Every difference between the contract (or a mutation of it) and the served
    /// document, in a stable order: operations (first those on one side only, then the
    /// differences of each common one, by method and path), then schemas (likewise, by
    /// name), then security schemes.
    pub fn drift(&self, contract: &Value, served: &Value) -> Vec<String> {
        let mut drift = Drift {
            rules: self,
            found: Vec::new(),
        };
        drift.operations(contract, served);
        drift.schemas(contract, served);
        drift.security_schemes(contract, served);
        drift.found
    }

    /// Panics with every difference if the served document drifted from the contract.
    pub fn assert_matches(&self, served: &Value) {
        let differences = self.drift(&self.read_contract(), served);
        assert!(
            differences.is_empty(),
            "{SERVED} drifted from openapi/{} ({} differences):\n  {}",
            self.contract,
            differences.len(),
            differences.join("\n  ")
        );
    }
}

/// The document a freshly started emulator serves at the URL `url` makes of it (with no
/// token).
pub async fn served_document(url: impl FnOnce(&Emulator) -> String) -> Value {
    let emulator = Emulator::builder().start().await.expect("emulator starts");
    let doc = super::get_json(&url(&emulator)).await;
    emulator.shutdown().await;
    doc
}

/// A schema reduced to what the comparison looks at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Shape {
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
pub struct Norm {
    pub shape: Shape,
    pub nullable: bool,
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
pub fn normalise(schema: &Value) -> Norm {
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

/// Whether an object schema admits properties it does not name: absent, `true` and `{}`
/// are open, `false` is closed, another schema is open to properties of that shape.
fn other_properties(schema: &Value) -> String {
    match schema.get("additionalProperties") {
        Some(Value::Bool(false)) => "closed".to_owned(),
        None | Some(Value::Bool(true)) => "open".to_owned(),
        Some(Value::Object(map)) if map.is_empty() => "open".to_owned(),
        Some(other) => format!("open to {}", normalise(other)),
    }
}

/// `[a, b]` of the names.
fn list<'a>(names: impl IntoIterator<Item = &'a String>) -> String {
    format!(
        "[{}]",
        names.into_iter().cloned().collect::<Vec<_>>().join(", ")
    )
}

/// The strings of an array field (`required`, `enum`), as a set.
fn strings(schema: &Value, field: &str) -> BTreeSet<String> {
    schema
        .get(field)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|value| match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect()
}

/// An object field of a value, or an empty map.
fn object(value: &Value, pointer: &str) -> Map<String, Value> {
    value
        .pointer(pointer)
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

/// Every operation: `METHOD /path` -> (path item, operation).
pub fn operations(doc: &Value) -> BTreeMap<String, (&Value, &Value)> {
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
    list(&names)
}

/// A response's bodies: media type -> schema.
fn content(response: &Value) -> BTreeMap<String, Norm> {
    response
        .get("content")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(media, body)| (media.clone(), normalise(&body["schema"])))
        .collect()
}

/// A security scheme's compared fields, `absent` where it has none (HTTP auth scheme
/// names are case-insensitive: `scheme` is lower case).
fn scheme_fields(scheme: &Value) -> BTreeMap<&'static str, String> {
    SCHEME_FIELDS
        .into_iter()
        .map(|field| {
            let value = scheme.get(field).and_then(Value::as_str).map_or_else(
                || "absent".to_owned(),
                |v| {
                    if field == "scheme" {
                        v.to_lowercase()
                    } else {
                        v.to_owned()
                    }
                },
            );
            (field, value)
        })
        .collect()
}

/// Whether `fields` are exactly `expected`, the others absent.
fn scheme_is(fields: &BTreeMap<&'static str, String>, expected: &[(&str, &str)]) -> bool {
    fields.iter().all(|(field, value)| {
        let want = expected
            .iter()
            .find(|(name, _)| name == field)
            .map_or("absent", |(_, v)| v);
        value == want
    })
}

/// The differences found so far, and what is allowed.
struct Drift<'r> {
    rules: &'r Rules,
    found: Vec<String>,
}

impl Drift<'_> {
    /// Reports names in one set but not the other: `what` gets the name, then the
    /// verdict. Returns the names in both.
    fn one_sided<'a>(
        &mut self,
        contract: impl IntoIterator<Item = &'a String>,
        served: impl IntoIterator<Item = &'a String>,
        what: impl Fn(&str) -> String,
    ) -> BTreeSet<String> {
        let contract: BTreeSet<String> = contract.into_iter().cloned().collect();
        let served: BTreeSet<String> = served.into_iter().cloned().collect();
        for name in contract.union(&served) {
            match (contract.contains(name), served.contains(name)) {
                (true, false) => self.missing(&what(name)),
                (false, true) => self.found.push(format!(
                    "{} is in {SERVED}, not in {}",
                    what(name),
                    self.rules.contract
                )),
                _ => {}
            }
        }
        contract.intersection(&served).cloned().collect()
    }

    /// Reports something in the contract that the served document lacks.
    fn missing(&mut self, what: &str) {
        self.found.push(format!(
            "{what} is in {}, missing from {SERVED}",
            self.rules.contract
        ));
    }

    /// Reports a value that differs: `what` is `X is`, then both values.
    fn differs(&mut self, what: &str, contract: impl fmt::Display, served: impl fmt::Display) {
        self.found.push(format!(
            "{what} is {contract} in {}, {served} in {SERVED}",
            self.rules.contract
        ));
    }

    /// Reports a value that differs, if it does.
    fn compare<T: PartialEq + fmt::Display>(&mut self, what: &str, contract: T, served: T) {
        if contract != served {
            self.differs(what, contract, served);
        }
    }

    fn operations(&mut self, contract: &Value, served: &Value) {
        let (contract_ops, served_ops) = (operations(contract), operations(served));
        let common = self.one_sided(contract_ops.keys(), served_ops.keys(), str::to_owned);
        for key in &common {
            let ((c_item, c_op), (s_item, s_op)) = (contract_ops[key], served_ops[key]);
            if c_op.get("operationId") != s_op.get("operationId") {
                self.differs(
                    &format!("{key}: operationId"),
                    &c_op["operationId"],
                    &s_op["operationId"],
                );
            }
            self.parameters(
                key,
                &parameters(contract, c_item, c_op),
                &parameters(served, s_item, s_op),
            );
            self.responses(key, c_op, s_op);
            self.compare(
                &format!("{key}: security"),
                security(contract, c_op),
                security(served, s_op),
            );
        }
    }

    fn parameters(
        &mut self,
        key: &str,
        contract: &BTreeMap<String, &Value>,
        served: &BTreeMap<String, &Value>,
    ) {
        let common = self.one_sided(contract.keys(), served.keys(), |name| {
            format!("{key}: parameter {name}")
        });
        for name in &common {
            let (c, s) = (contract[name], served[name]);
            let required = |p: &Value| p.get("required").and_then(Value::as_bool).unwrap_or(false);
            self.compare(
                &format!("{key}: parameter {name}: required"),
                required(c),
                required(s),
            );
            self.compare(
                &format!("{key}: parameter {name}: schema"),
                normalise(&c["schema"]),
                normalise(&s["schema"]),
            );
            for bound in ["minimum", "maximum"] {
                let value = |p: &Value| {
                    p["schema"]
                        .get(bound)
                        .map_or_else(|| "absent".to_owned(), Value::to_string)
                };
                self.compare(
                    &format!("{key}: parameter {name}: {bound}"),
                    value(c),
                    value(s),
                );
            }
        }
    }

    fn responses(&mut self, key: &str, c_op: &Value, s_op: &Value) {
        let (c_responses, s_responses) = (object(c_op, "/responses"), object(s_op, "/responses"));
        for (status, c_response) in &c_responses {
            let Some(s_response) = s_responses.get(status) else {
                self.missing(&format!("{key}: response {status}"));
                continue;
            };
            let (c_content, s_content) = (content(c_response), content(s_response));
            let optional = self.rules.optional_media_types;
            // Media types the served document may leave out count only when it has them.
            let c_media: Vec<&String> = c_content
                .keys()
                .filter(|media| {
                    !optional.contains(&media.as_str()) || s_content.contains_key(*media)
                })
                .collect();
            if c_media.is_empty() && !c_content.is_empty() {
                self.missing(&format!("{key}: response {status}: a body"));
            }
            let common = self.one_sided(c_media, s_content.keys(), |media| {
                format!("{key}: response {status}: content {media}")
            });
            for media in &common {
                self.compare(
                    &format!("{key}: response {status}: {media} schema"),
                    &c_content[media],
                    &s_content[media],
                );
            }
        }
    }

    /// The components of a kind (`schemas`) of both documents, by name; reports those in
    /// one only (as `{label} `name``) and returns the names in both.
    fn components(
        &mut self,
        contract: &Value,
        served: &Value,
        kind: &str,
        label: &str,
    ) -> (Map<String, Value>, Map<String, Value>, BTreeSet<String>) {
        let pointer = format!("/components/{kind}");
        let (c, s) = (object(contract, &pointer), object(served, &pointer));
        let common = self.one_sided(c.keys(), s.keys(), |name| format!("{label} `{name}`"));
        (c, s, common)
    }

    fn schemas(&mut self, contract: &Value, served: &Value) {
        let (c_schemas, s_schemas, common) = self.components(contract, served, "schemas", "schema");
        for name in &common {
            let (c, s) = (&c_schemas[name], &s_schemas[name]);
            let schema = format!("schema `{name}`");
            self.compare(&format!("{schema}: type"), normalise(c), normalise(s));
            for field in ["enum", "required"] {
                let (c_values, s_values) = (strings(c, field), strings(s, field));
                if c_values != s_values {
                    self.differs(
                        &format!("{schema}: {field}"),
                        list(&c_values),
                        list(&s_values),
                    );
                }
            }
            if c.get("properties").is_some() || s.get("properties").is_some() {
                self.compare(
                    &format!("{schema}: other properties"),
                    other_properties(c),
                    other_properties(s),
                );
            }
            let (c_props, s_props) = (object(c, "/properties"), object(s, "/properties"));
            let common = self.one_sided(c_props.keys(), s_props.keys(), |property| {
                format!("{schema}: property `{property}`")
            });
            for property in &common {
                self.compare(
                    &format!("{schema}: property `{property}`"),
                    normalise(&c_props[property]),
                    normalise(&s_props[property]),
                );
            }
        }
    }

    fn security_schemes(&mut self, contract: &Value, served: &Value) {
        let (c_schemes, s_schemes, common) =
            self.components(contract, served, "securitySchemes", "security scheme");
        for name in &common {
            let (c, s) = (
                scheme_fields(&c_schemes[name]),
                scheme_fields(&s_schemes[name]),
            );
            let stands_in = self.rules.scheme_stand_ins.iter().any(|stand_in| {
                stand_in.name == name
                    && scheme_is(&c, stand_in.contract)
                    && scheme_is(&s, stand_in.served)
            });
            if stands_in {
                continue;
            }
            for field in SCHEME_FIELDS {
                self.compare(
                    &format!("security scheme `{name}`: {field}"),
                    &c[field],
                    &s[field],
                );
            }
        }
    }
}
