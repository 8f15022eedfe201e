//! The typed CommunicationParty API v2 client is lossless: a payload that fills every
//! property of every schema of `openapi/cpapi.json` decodes into the generated type and
//! encodes to the same JSON (`null` and absent taken alike), and every date-time
//! property reads .NET's date-times with 3 and 7 fractional digits, with and without an
//! offset.
#![cfg(feature = "cpapi")]

mod support;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use helseid::cpapi::types;
use support::without_nulls;

/// The schemas of `openapi/cpapi.json`.
fn schemas() -> Map<String, Value> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/cpapi.json");
    let text = std::fs::read_to_string(path).expect("openapi/cpapi.json");
    let doc: Value = serde_json::from_str(&text).expect("JSON");
    doc["components"]["schemas"]
        .as_object()
        .expect("schemas")
        .clone()
}

/// A value for `schema` that fills every property, with `date_time` for each
/// date-time.
fn fill(schema: &Value, schemas: &Map<String, Value>, date_time: &str) -> Value {
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        let name = reference.rsplit('/').next().expect("a name");
        return fill(&schemas[name], schemas, date_time);
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        return values.last().expect("an enum value").clone();
    }
    match (
        schema["type"].as_str().expect("a type"),
        schema.get("format").and_then(Value::as_str),
    ) {
        ("object", _) => Value::Object(
            schema["properties"]
                .as_object()
                .expect("properties")
                .iter()
                .map(|(name, property)| (name.clone(), fill(property, schemas, date_time)))
                .collect(),
        ),
        ("array", _) => json!([
            fill(&schema["items"], schemas, date_time),
            fill(&schema["items"], schemas, date_time)
        ]),
        ("integer", Some("int64")) => json!(4_000_000_001_i64),
        ("integer", _) => json!(2_000_000_001),
        ("boolean", _) => json!(true),
        ("string", Some("date-time")) => json!(date_time),
        // Base64 of a DER prefix.
        ("string", Some("byte")) => json!("MIIBkTCB+wIJAKHBfpegPjMCMA0GCSqGSIb3DQEBCwUA"),
        ("string", _) if schema.get("pattern").is_some() => json!("0150"),
        ("string", _) => json!("Sjøgata 1 – «æøå»"),
        (other, _) => panic!("no value for {other}"),
    }
}

/// Decodes `json` as `T` and encodes it again.
fn round_trip<T: DeserializeOwned + Serialize>(name: &str, json: &Value) -> Value {
    let decoded: T = serde_json::from_value(json.clone())
        .unwrap_or_else(|e| panic!("{name} does not decode {json}: {e}"));
    serde_json::to_value(&decoded).unwrap_or_else(|e| panic!("{name} does not encode: {e}"))
}

/// Runs `check` with every schema's name and the round trip of its generated type.
macro_rules! every_schema {
    ($check:expr) => {
        every_schema!(@ $check;
            AdministrativeCode, AmqpAddress, AmqpTransportStatus, Certificate,
            CertificateMetadata, CertificatePairInfo, Code, CommunicationParty,
            CommunicationPartyExport, CommunicationPartyType, CommunicationPartyTypeLegacy,
            "CommunicationParty_Legacy" => CommunicationPartyLegacy, CoverageInfo,
            ElectronicAddress, Event, EventType, EventsResponse, FutureElectronicAddress,
            "HPRInformation" => HprInformation, HerIdInputCollection,
            InterMunicipalityCoverageArea, OrganizationDetails, OrganizationSearchParameters,
            ParentOrganization, Period, Person, PersonDetails, PersonSearchParameters,
            PhysicalAddress, PostalAddress, SearchParameters, SearchResponse, ServiceDetails,
            ServiceSearchParameters
        )
    };
    (@ $check:expr; $($rest:tt)*) => {{
        let mut names: Vec<&str> = Vec::new();
        every_schema!(@@ $check, names; $($rest)*);
        names
    }};
    (@@ $check:expr, $names:ident; $name:literal => $ty:ident $(, $($rest:tt)*)?) => {
        $check($name, &|json: &Value| round_trip::<types::$ty>($name, json));
        $names.push($name);
        $(every_schema!(@@ $check, $names; $($rest)*);)?
    };
    (@@ $check:expr, $names:ident; $ty:ident $(, $($rest:tt)*)?) => {
        $check(stringify!($ty), &|json: &Value| round_trip::<types::$ty>(stringify!($ty), json));
        $names.push(stringify!($ty));
        $(every_schema!(@@ $check, $names; $($rest)*);)?
    };
    (@@ $check:expr, $names:ident;) => {};
}

type RoundTrip<'a> = &'a dyn Fn(&Value) -> Value;

#[test]
fn a_payload_that_fills_every_property_comes_back_the_same() {
    let schemas = schemas();
    let date_time = "2026-02-24T09:42:44.6410000+01:00";
    let names = every_schema!(|name: &str, trip: RoundTrip<'_>| {
        let full = fill(&schemas[name], &schemas, date_time);
        assert_eq!(trip(&full), full, "{name}");
    });
    // Every schema of the document, each once.
    let mut names = names;
    names.sort_unstable();
    let mut all: Vec<&str> = schemas.keys().map(String::as_str).collect();
    all.sort_unstable();
    assert_eq!(names, all);
}

#[test]
fn null_and_absent_come_back_alike() {
    let schemas = schemas();
    every_schema!(|name: &str, trip: RoundTrip<'_>| {
        let schema = &schemas[name];
        let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
            return;
        };
        let full = fill(schema, &schemas, "2026-02-24T09:42:44.6410000+01:00");
        // Every nullable property null, then left out.
        let mut nulls = full.clone();
        let mut absent = full.clone();
        for (property, definition) in properties {
            if definition.get("nullable") == Some(&json!(true)) {
                nulls[property] = Value::Null;
                absent.as_object_mut().expect("an object").remove(property);
            }
        }
        assert_eq!(without_nulls(&trip(&nulls)), absent, "{name} with nulls");
        let required: Vec<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        // Left out where NHN allows it (not required).
        let mut sparse = full.clone();
        for property in properties.keys() {
            if !required.contains(&property.as_str()) {
                sparse.as_object_mut().expect("an object").remove(property);
            }
        }
        assert_eq!(
            without_nulls(&trip(&sparse)),
            without_nulls(&sparse),
            "{name} sparse"
        );
    });
}

#[test]
fn every_date_time_reads_dotnet_with_3_and_7_digits_with_and_without_offset() {
    let schemas = schemas();
    for (written, read_back) in [
        (
            "2026-02-24T09:42:44.641+01:00",
            "2026-02-24T09:42:44.6410000+01:00",
        ),
        (
            "2026-02-24T09:42:44.6412345+01:00",
            "2026-02-24T09:42:44.6412345+01:00",
        ),
        ("2026-02-24T08:42:44.641", "2026-02-24T08:42:44.6410000"),
        ("2026-02-24T08:42:44.6412345", "2026-02-24T08:42:44.6412345"),
        (
            "2026-02-24T08:42:44.641Z",
            "2026-02-24T08:42:44.6410000+00:00",
        ),
        ("2026-02-24T08:42:44", "2026-02-24T08:42:44.0000000"),
    ] {
        every_schema!(|name: &str, trip: RoundTrip<'_>| {
            let payload = fill(&schemas[name], &schemas, written);
            let expected = fill(&schemas[name], &schemas, read_back);
            assert_eq!(trip(&payload), expected, "{name} with {written}");
        });
    }
}

#[test]
fn the_filled_payloads_hold_date_times_where_nhn_has_them() {
    // Sanity of the test itself: the date-time properties are reached.
    let schemas = schemas();
    let party = fill(&schemas["CommunicationParty"], &schemas, "X");
    assert_eq!(party["validFrom"], "X");
    assert_eq!(party["currentSigningCertificate"]["validTo"], "X");
    let legacy = fill(&schemas["CommunicationParty_Legacy"], &schemas, "X");
    assert_eq!(legacy["FutureElectronicAddresses"][1]["ValidFrom"], "X");
    assert_eq!(legacy["Valid"]["To"], "X");
}
