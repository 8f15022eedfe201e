//! Strategies shared by the fuzz tests of the library (`tests/fuzz.rs`) and of the
//! emulator (`emulator/tests/fuzz.rs`): text a hostile server or a broken file might hold,
//! JSON of any shape, documents built from the members a parser knows, cut short or with
//! a byte changed. Each fuzz test crate includes it with `#[path]`, apart from
//! `support/mod.rs`, which crates without proptest share.
// Each crate uses a part of it, and `pub` reads as an API.
#![allow(dead_code, unreachable_pub)]

use proptest::prelude::*;
use proptest::sample::{Index, select};
use serde_json::{Map, Value};

/// The default number of cases (or `PROPTEST_CASES`), and failures kept beside this
/// file (`fuzz.proptest-regressions` in `proptest-regressions/`) to be tried first next time.
pub fn config() -> ProptestConfig {
    ProptestConfig {
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"),
        )),
        ..ProptestConfig::default()
    }
}

/// Text a hostile server or a broken file might hold: anything, or the characters that
/// break logs and terminals.
pub fn text() -> impl Strategy<Value = String> {
    let nasty = select(vec![
        "\n",
        "\r\n",
        "\u{1b}[31m",
        "\u{1b}]0;x\u{7}",
        "\u{0}",
        "\u{7f}",
        "\u{85}",
        "\u{202e}",
        "\u{2028}",
        "\t",
        "\"",
        "\\",
        "%7B",
        "%0A",
        "{",
        "}",
        "[",
        "]",
        ":",
        ",",
        "é",
        "🦀",
    ]);
    prop_oneof![
        3 => any::<String>(),
        2 => prop::collection::vec(
            prop_oneof![nasty, select(vec!["a", "Bearer", "DPoP", "eyJ", "x", "1", " "])],
            0..12
        )
        .prop_map(|parts| parts.concat()),
        1 => "[A-Za-z0-9_-]{0,64}",
    ]
}

/// A JSON value of any type; objects take their keys mostly from `keys`.
pub fn json(keys: &'static [&'static str]) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        text().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 32, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((key(keys), inner), 0..6)
                .prop_map(|members| Value::Object(members.into_iter().collect())),
        ]
    })
}

pub fn key(keys: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop_oneof![4 => select(keys).prop_map(str::to_owned), 1 => text()]
}

/// An object whose members come from `members` (name and a strategy for its value),
/// each present or not, plus stray members.
pub fn object(
    members: Vec<(&'static str, BoxedStrategy<Value>)>,
    keys: &'static [&'static str],
) -> impl Strategy<Value = Value> {
    let each: Vec<_> = members
        .into_iter()
        .map(|(name, value)| prop::option::weighted(0.9, value).prop_map(move |v| (name, v)))
        .collect();
    let stray_key = prop_oneof![1 => select(keys).prop_map(str::to_owned), 3 => text()];
    (each, prop::collection::vec((stray_key, json(keys)), 0..3)).prop_map(|(known, stray)| {
        let mut object = Map::new();
        for (name, value) in known {
            if let Some(value) = value {
                object.insert(name.to_owned(), value);
            }
        }
        object.extend(stray);
        Value::Object(object)
    })
}

/// The bytes of a document: `value` serialised, maybe cut short or with a byte changed,
/// or any bytes at all.
pub fn document(value: impl Strategy<Value = Value>) -> impl Strategy<Value = Vec<u8>> {
    let mutated = (value, any::<Index>(), any::<u8>(), 0..8u8).prop_map(|(v, at, byte, how)| {
        let mut bytes = serde_json::to_vec(&v).expect("serialise");
        match how {
            0 => bytes.truncate(at.index(bytes.len() + 1)),
            1 if !bytes.is_empty() => {
                let i = at.index(bytes.len());
                bytes[i] = byte;
            }
            _ => {}
        }
        bytes
    });
    prop_oneof![4 => mutated, 1 => prop::collection::vec(any::<u8>(), 0..256)]
}

/// A value, or mostly this one.
pub fn or_any(usual: Vec<Value>, keys: &'static [&'static str]) -> BoxedStrategy<Value> {
    prop_oneof![6 => select(usual), 1 => json(keys)].boxed()
}

/// Up to two changes to an object's members: a member set to any value, or removed.
pub fn changes(
    keys: &'static [&'static str],
) -> impl Strategy<Value = Vec<(&'static str, Option<Value>)>> {
    prop::collection::vec((select(keys), prop::option::of(json(keys))), 0..3)
}

/// `value` with `changes` made.
pub fn apply(mut value: Value, changes: &[(&'static str, Option<Value>)]) -> Value {
    for (name, change) in changes {
        match change {
            Some(change) => value[*name] = change.clone(),
            None => {
                value.as_object_mut().map(|o| o.remove(*name));
            }
        }
    }
    value
}

/// `valid` with up to two members replaced by any value or removed.
pub fn tweaked(
    valid: impl Fn() -> Value + Clone + 'static,
    keys: &'static [&'static str],
) -> impl Strategy<Value = Value> {
    changes(keys).prop_map(move |changes| apply(valid(), &changes))
}

pub fn strings(values: &[&str]) -> Vec<Value> {
    values.iter().map(|v| Value::from(*v)).collect()
}
