#!/usr/bin/env bash
# Regenerates the reference fixtures the tests compare against. Needs Python 3 with
# numpy, scikit-learn and PyYAML (pip install numpy scikit-learn pyyaml). Run it after a
# deliberate change to the scenario generator; the tests say when it is due.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin slaguard
bin="${CARGO_TARGET_DIR:-target}/release/slaguard"
scenario="$(mktemp -d)"
trap 'rm -rf "$scenario"' EXIT
# The golden scenario: 3 hours, 2 inferences/s per model, seed 7, with malformed lines.
"$bin" generate --out "$scenario" --duration 3h --rate 2 --seed 7
python3 scripts/reference_replay.py --scenario "$scenario" --out tests/fixtures/golden
python3 scripts/reference_metrics.py tests/fixtures/metric_reference.json
python3 scripts/reference_drift.py tests/fixtures/drift_reference.json
