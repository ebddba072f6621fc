//! The Avro schemas in schemas/ parse, and the output events slaguard emits (taken from a
//! replay of the golden scenario) are valid records of them.

mod common;

use apache_avro::Schema;
use serde_json::Value as Json;

fn schema(name: &str) -> Schema {
    let path = format!("{}/schemas/{name}.avsc", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    Schema::parse_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// JSON → Avro value, following the schema (unions pick the branch the JSON fits).
fn to_avro(json: &Json, schema: &Schema) -> apache_avro::types::Value {
    use apache_avro::types::Value as A;
    match (schema, json) {
        (Schema::Union(u), j) => {
            for (i, variant) in u.variants().iter().enumerate() {
                let fits = matches!(
                    (variant, j),
                    (Schema::Null, Json::Null)
                        | (Schema::String, Json::String(_))
                        | (Schema::Double, Json::Number(_))
                        | (Schema::Long, Json::Number(_))
                        | (Schema::Int, Json::Number(_))
                        | (Schema::Boolean, Json::Bool(_))
                );
                if fits {
                    return A::Union(i as u32, Box::new(to_avro(j, variant)));
                }
            }
            panic!("{j} fits no branch of {schema:?}")
        }
        (Schema::Record(r), Json::Object(o)) => {
            for k in o.keys() {
                assert!(
                    r.lookup.contains_key(k),
                    "field `{k}` is not in schema {}",
                    r.name.name()
                );
            }
            A::Record(
                r.fields
                    .iter()
                    .map(|f| {
                        (
                            f.name.clone(),
                            to_avro(o.get(&f.name).unwrap_or(&Json::Null), &f.schema),
                        )
                    })
                    .collect(),
            )
        }
        (Schema::Map(m), Json::Object(o)) => A::Map(
            o.iter()
                .map(|(k, v)| (k.clone(), to_avro(v, &m.types)))
                .collect(),
        ),
        (Schema::Enum(e), Json::String(s)) => {
            let i = e
                .symbols
                .iter()
                .position(|x| x == s)
                .unwrap_or_else(|| panic!("`{s}` is not a symbol of {}", e.name.name()));
            A::Enum(i as u32, s.clone())
        }
        (Schema::String, Json::String(s)) => A::String(s.clone()),
        (Schema::Double, Json::Number(n)) => A::Double(n.as_f64().expect("number")),
        (Schema::Long, Json::Number(n)) => A::Long(n.as_i64().expect("integer")),
        (Schema::Int, Json::Number(n)) => A::Int(n.as_i64().expect("integer") as i32),
        (Schema::Null, Json::Null) => A::Null,
        (s, j) => panic!("{j} does not fit {s:?}"),
    }
}

#[test]
fn every_schema_parses() {
    for name in [
        "inference",
        "label",
        "ack",
        "breach",
        "metric",
        "dead_letter",
    ] {
        schema(name);
    }
}

#[test]
fn outputs_are_valid_records_of_their_schemas() {
    let dir = tempfile::tempdir().expect("tempdir");
    common::write_scenario(dir.path(), &common::golden_spec());
    let (_, _, out) = common::replay(dir.path(), "out");
    for (file, name) in [
        ("metrics.jsonl", "metric"),
        ("breaches.jsonl", "breach"),
        ("dead_letters.jsonl", "dead_letter"),
    ] {
        let s = schema(name);
        let lines = common::read_jsonl(&out.join(file));
        assert!(!lines.is_empty(), "{file} is empty");
        let mut writer = apache_avro::Writer::new(&s, Vec::new()).expect("writer");
        for line in lines.iter().take(500) {
            let value = to_avro(line, &s);
            writer
                .append_value(value)
                .unwrap_or_else(|e| panic!("{file}: {line} is not a valid {name}: {e}"));
        }
        let bytes = writer.into_inner().expect("avro container");
        let read = apache_avro::Reader::new(&bytes[..])
            .expect("read back")
            .count();
        assert_eq!(read, lines.len().min(500));
    }
}
