//! docker-compose.yml is valid YAML that starts Kafka, creates exactly the topics slaguard
//! reads and writes (inferences and labels co-partitioned), and runs `slaguard run` on a
//! configuration that `slaguard check` accepts.

use serde_yaml_ng::Value;
use slaguard::kafka::KafkaSettings;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn compose() -> Value {
    let text =
        std::fs::read_to_string(format!("{ROOT}/docker-compose.yml")).expect("docker-compose.yml");
    serde_yaml_ng::from_str(&text).expect("valid YAML")
}

#[test]
fn compose_creates_the_right_topics() {
    let c = compose();
    let script = c["services"]["topics"]["entrypoint"][2]
        .as_str()
        .expect("topic script");
    let created: Vec<(String, u32)> = script
        .lines()
        .filter_map(|l| l.trim().strip_prefix("create "))
        .map(|l| {
            let mut parts = l.split_whitespace();
            (
                parts.next().expect("topic").to_string(),
                parts.next().expect("partitions").parse().expect("number"),
            )
        })
        .collect();
    let defaults = KafkaSettings::new("kafka:19092");
    let mut wanted: Vec<String> = defaults
        .input_topics()
        .iter()
        .map(|(t, _)| t.to_string())
        .collect();
    wanted.extend(defaults.output_topics());
    wanted.extend(defaults.internal_topics());
    let mut names: Vec<String> = created.iter().map(|(t, _)| t.clone()).collect();
    names.sort();
    wanted.sort();
    assert_eq!(names, wanted);
    let partitions = |t: &str| created.iter().find(|(n, _)| n == t).map(|(_, p)| *p);
    assert_eq!(
        partitions("inferences"),
        partitions("labels"),
        "co-partitioned"
    );
    assert_eq!(
        partitions("sla.partials"),
        Some(1),
        "one partials partition"
    );
    assert_eq!(
        partitions("sla.join-state"),
        partitions("inferences"),
        "a join-state partition per pair"
    );
    assert!(
        script.contains("create sla.join-state 4 --config=cleanup.policy=compact"),
        "the join state is compacted"
    );
    assert_eq!(
        c["services"]["kafka"]["image"].as_str(),
        Some("apache/kafka:4.1.0")
    );
    assert!(
        c["services"]["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]
            .as_str()
            .is_some_and(|r| r.contains("controller")),
        "KRaft"
    );
}

#[test]
fn compose_runs_slaguard_on_a_valid_sla() {
    let c = compose();
    let svc = &c["services"]["slaguard"];
    assert_eq!(svc["build"].as_str(), Some("."));
    assert!(std::path::Path::new(&format!("{ROOT}/Dockerfile")).is_file());
    let command: Vec<&str> = svc["command"]
        .as_sequence()
        .expect("command")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(command[0], "run");
    let arg = |flag: &str| {
        command
            .iter()
            .position(|a| *a == flag)
            .map(|i| command[i + 1])
    };
    assert_eq!(arg("--brokers"), Some("kafka:19092"));
    // The status server listens beyond the container's loopback, on the published port.
    assert_eq!(arg("--http"), Some("0.0.0.0:9464"));
    let ports: Vec<&str> = svc["ports"]
        .as_sequence()
        .expect("ports")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(ports, ["9464:9464"]);
    // The config folder (SLA file and the reference profile it names) is mounted read-only.
    let mounted = svc["volumes"]
        .as_sequence()
        .expect("volumes")
        .iter()
        .filter_map(Value::as_str)
        .find(|v| v.ends_with(":/etc/slaguard:ro"))
        .expect("config mount");
    let local = mounted.split(':').next().expect("host path");
    assert_eq!(arg("--config"), Some("/etc/slaguard/sla.yaml"));
    let path = format!("{ROOT}/{}/sla.yaml", local.trim_start_matches("./"));
    slaguard::config::load(std::path::Path::new(&path)).unwrap_or_else(|e| panic!("{path}: {e}"));
}
