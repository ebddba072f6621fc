//! The Avro schemas in schemas/ parse, and the output events slaguard emits (taken from a
//! replay of the golden scenario) are valid records of them.

mod common;

use apache_avro::Schema;

fn schema(name: &str) -> Schema {
    let path = format!("{}/schemas/{name}.avsc", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    Schema::parse_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn every_schema_parses() {
    for name in [
        "inference",
        "label",
        "ack",
        "breach",
        "escalation",
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
        ("escalations.jsonl", "escalation"),
        ("dead_letters.jsonl", "dead_letter"),
    ] {
        let s = schema(name);
        let lines = common::read_jsonl(&out.join(file));
        assert!(!lines.is_empty(), "{file} is empty");
        let mut writer = apache_avro::Writer::new(&s, Vec::new()).expect("writer");
        for line in lines.iter().take(500) {
            let value = slaguard::avro::json_to_avro(line, &s)
                .unwrap_or_else(|e| panic!("{file}: {line}: {e}"));
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
