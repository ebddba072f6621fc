//! PSI, KS and JS distance against NumPy/SciPy (tests/fixtures/drift_reference.json, written
//! by scripts/reference_drift.py), within 1e-9 relative, on identical bins: numeric shifts,
//! empty bins (the 1e-4 floor), and a categorical distribution with an unseen category.

use serde_json::Value;
use slaguard::drift;

#[test]
fn drift_scores_match_numpy_and_scipy() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/drift_reference.json"
    ))
    .expect("fixture");
    let f: Value = serde_json::from_str(&text).expect("json");
    let cases = f["cases"].as_array().expect("cases");
    assert!(cases.len() >= 10);
    for c in cases {
        let name = c["name"].as_str().expect("name");
        let expected: Vec<f64> = c["expected"]
            .as_array()
            .expect("expected")
            .iter()
            .map(|v| v.as_f64().expect("number"))
            .collect();
        let counts: Vec<u64> = c["counts"]
            .as_array()
            .expect("counts")
            .iter()
            .map(|v| v.as_u64().expect("count"))
            .collect();
        let actual = drift::proportions(&counts).expect("counts");
        for (metric, got) in [
            ("psi", drift::psi(&expected, &actual)),
            ("ks", drift::ks(&expected, &actual)),
            ("js_distance", drift::js_distance(&expected, &actual)),
        ] {
            let want = c[metric].as_f64().expect("reference value");
            assert!(
                (got - want).abs() <= 1e-9 * want.abs().max(1e-12) + 1e-15,
                "{name}: {metric} = {got}, reference {want}"
            );
        }
    }
}
