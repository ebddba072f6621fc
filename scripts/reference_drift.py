#!/usr/bin/env python3
"""Writes tests/fixtures/drift_reference.json: reference and current bin proportions
(fixed seed) with PSI, KS and JS distance computed by NumPy and SciPy, for
tests/drift_reference.rs (tolerance 1e-9 relative).

    python3 scripts/reference_drift.py tests/fixtures/drift_reference.json
"""
import json
import sys

import numpy as np
import scipy
from scipy.spatial.distance import jensenshannon

rng = np.random.default_rng(20261130)
FLOOR = 1e-4


def case(name, expected, counts):
    expected = np.asarray(expected, dtype=float)
    actual = np.asarray(counts, dtype=float) / np.sum(counts)
    e, a = np.maximum(expected, FLOOR), np.maximum(actual, FLOOR)
    return {
        "name": name, "expected": expected.tolist(), "counts": [int(c) for c in counts],
        "psi": float(np.sum((a - e) * np.log(a / e))),
        "ks": float(np.max(np.abs(np.cumsum(expected) - np.cumsum(actual)))),
        "js_distance": float(jensenshannon(expected, actual, base=2)),
    }


cases = []
# Numeric, 10 quantile bins, small and large shifts.
ref = rng.normal(0, 1, 20000)
edges = np.quantile(ref, np.linspace(0.1, 0.9, 9))
expected = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=10) / len(ref)
for shift in (0.0, 0.1, 0.5, 2.0):
    cur = rng.normal(shift, 1, 5000)
    cases.append(case(f"numeric-shift-{shift}", expected, np.bincount(np.searchsorted(edges, cur, side="right"), minlength=10)))
# Empty current bins: the floor decides PSI.
cases.append(case("empty-bins", expected, [0, 0, 0, 10, 500, 400, 90, 0, 0, 0]))
# Categorical with an unseen category: a last bin the reference gives 0.
cases.append(case("categorical-unseen", [0.6, 0.3, 0.1, 0.0], [500, 200, 100, 200]))
# Random proportions.
for i in range(5):
    e = rng.dirichlet(np.ones(8))
    cases.append(case(f"random-{i}", e, rng.multinomial(3000, rng.dirichlet(np.ones(8)))))

json.dump({"meta": {"numpy": np.__version__, "scipy": scipy.__version__, "floor": FLOOR}, "cases": cases}, open(sys.argv[1], "w"), indent=1)
print("wrote", sys.argv[1], len(cases), "cases")
