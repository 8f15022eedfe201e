//! YAML to JSON: OpenAPI documents in YAML (openapi-generator writes them so) read into
//! the same `serde_json::Value` a JSON document gives.

use serde_json::{Map, Number, Value};
use yaml_rust2::{Yaml, YamlLoader};

/// The JSON value of the (first) YAML document in `text`.
pub(crate) fn to_json(text: &str) -> Result<Value, String> {
    let documents = YamlLoader::load_from_str(text).map_err(|e| e.to_string())?;
    let document = documents
        .into_iter()
        .next()
        .ok_or_else(|| "it is empty".to_owned())?;
    convert(document)
}

fn convert(yaml: Yaml) -> Result<Value, String> {
    Ok(match yaml {
        Yaml::Null => Value::Null,
        Yaml::Boolean(b) => Value::Bool(b),
        Yaml::Integer(i) => Value::Number(i.into()),
        Yaml::Real(text) => {
            let parsed: f64 = text
                .parse()
                .map_err(|_| format!("`{text}` is not a number"))?;
            Number::from_f64(parsed)
                .map(Value::Number)
                .ok_or_else(|| format!("`{text}` is not a JSON number"))?
        }
        Yaml::String(s) => Value::String(s),
        Yaml::Array(items) => {
            Value::Array(items.into_iter().map(convert).collect::<Result<_, _>>()?)
        }
        Yaml::Hash(hash) => {
            let mut map = Map::new();
            for (key, value) in hash {
                let key = match key {
                    Yaml::String(s) | Yaml::Real(s) => s,
                    Yaml::Integer(i) => i.to_string(),
                    Yaml::Boolean(b) => b.to_string(),
                    Yaml::Null => "null".to_owned(),
                    other => return Err(format!("a mapping key is not a scalar: {other:?}")),
                };
                map.insert(key, convert(value)?);
            }
            Value::Object(map)
        }
        Yaml::Alias(_) => return Err("aliases (`*name`) are not read".to_owned()),
        Yaml::BadValue => return Err("a value cannot be read".to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::to_json;

    #[test]
    fn yaml_reads_as_the_json_it_means() {
        let text = "openapi: 3.0.1\ninfo:\n  title: t\n  version: '2'\npaths:\n  /a:\n    get:\n      parameters:\n      - name: x\n        in: query\n        schema:\n          type: integer\n          minimum: 1.5\n          nullable: true\n      responses:\n        \"200\":\n          description: ok\n";
        assert_eq!(
            to_json(text).unwrap(),
            json!({
                "openapi": "3.0.1",
                "info": {"title": "t", "version": "2"},
                "paths": {"/a": {"get": {
                    "parameters": [{"name": "x", "in": "query", "schema": {"type": "integer", "minimum": 1.5, "nullable": true}}],
                    "responses": {"200": {"description": "ok"}}
                }}}
            })
        );
    }

    #[test]
    fn bad_yaml_is_one_line() {
        let error = to_json("a: [1, 2\nb: }").unwrap_err();
        assert!(!error.contains('\n'), "{error}");
    }
}
