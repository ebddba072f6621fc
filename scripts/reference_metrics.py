#!/usr/bin/env python3
"""Writes tests/fixtures/metric_reference.json: random inputs (fixed seed) with the metric
values scikit-learn and NumPy compute for them. tests/metric_reference.rs feeds the same
inputs through slaguard's summaries and compares, with the tolerances stated there.

    python3 scripts/reference_metrics.py tests/fixtures/metric_reference.json
"""
import json
import math
import sys

import numpy as np
import sklearn
from sklearn.metrics import (accuracy_score, brier_score_loss, f1_score, log_loss,
                             mean_absolute_error, mean_squared_error, precision_score,
                             recall_score, roc_auc_score)

rng = np.random.default_rng(20261129)


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def binary_case(name, y, score, threshold=0.5):
    y = y.astype(int)
    pred = (score >= threshold).astype(int)
    return {
        "name": name, "threshold": threshold, "truth": y.tolist(), "score": score.tolist(),
        "expected": {
            "accuracy": accuracy_score(y, pred),
            # slaguard leaves a ratio with a zero denominator undefined (null), not 0.
            "precision": precision_score(y, pred) if pred.sum() > 0 else None,
            "recall": recall_score(y, pred) if y.sum() > 0 else None,
            "f1": f1_score(y, pred) if (pred.sum() + y.sum()) > 0 else None,
            "roc_auc": roc_auc_score(y, score),
            "log_loss": log_loss(y, score, labels=[0, 1]),
            "brier": brier_score_loss(y, score),
            "positive_rate": float(pred.mean()),
        },
    }


def nearest_rank(values, q):
    v = np.sort(values)
    return float(v[max(1, math.ceil(q * len(v))) - 1])


cases = {"binary": [], "multiclass": [], "regression": [], "latency": []}

y = rng.random(4000) < 0.4
cases["binary"].append(binary_case("balanced", y, np.round(sigmoid(np.where(y, 1.0, -1.0) + rng.normal(0, 1.2, 4000)), 6)))

y = rng.random(10000) < 0.02
neg = rng.beta(0.5, 200, 10000)
pos = rng.beta(2, 20, 10000)
cases["binary"].append(binary_case("rare-positives-low-scores", y, np.clip(np.where(y, pos, neg), 1e-12, 1 - 1e-12)))

y = rng.random(3000) < 0.5
cases["binary"].append(binary_case("ties", y, np.round(sigmoid(np.where(y, 0.7, -0.7) + rng.normal(0, 1, 3000)), 2)))

y = rng.random(3000) < 0.3
cases["binary"].append(binary_case("extremes", y, sigmoid(np.where(y, 4, -4) + rng.normal(0, 6, 3000)), threshold=0.3))

classes = ["a", "b", "c", "d", "e"]
truth = rng.choice(classes, 3000)
wrong = rng.choice(classes[:4], 3000)
pred = np.where(rng.random(3000) < 0.7, truth, wrong)
cases["multiclass"].append({
    "name": "five-classes-one-never-predicted", "truth": truth.tolist(), "predicted": pred.tolist(),
    "expected": {
        "accuracy": accuracy_score(truth, pred),
        "macro_precision": precision_score(truth, pred, average="macro", zero_division=0),
        "macro_recall": recall_score(truth, pred, average="macro", zero_division=0),
        "macro_f1": f1_score(truth, pred, average="macro", zero_division=0),
    },
})

y = rng.normal(50, 20, 3000)
y[rng.random(3000) < 0.01] = 0.0
p = y + rng.normal(0, 5, 3000)
nz = y != 0
cases["regression"].append({
    "name": "with-zero-truths", "truth": y.tolist(), "predicted": p.tolist(),
    "expected": {
        "mae": mean_absolute_error(y, p),
        "rmse": math.sqrt(mean_squared_error(y, p)),
        # MAPE over outcomes whose truth is not zero (slaguard's definition).
        "mape": float(np.mean(np.abs(p[nz] - y[nz]) / np.abs(y[nz]))),
    },
})

lat = np.round(rng.lognormal(np.log(40), 0.8, 10000), 2)
lat[:5] = [0.0, 0.01, 2500.0, 60000.0, 0.5]
micros = np.floor(lat * 1000 + 0.5)
cases["latency"].append({
    "name": "lognormal-ms", "latency_ms": lat.tolist(),
    "expected": {
        "latency_p50": nearest_rank(micros, 0.5) / 1000, "latency_p90": nearest_rank(micros, 0.9) / 1000,
        "latency_p95": nearest_rank(micros, 0.95) / 1000, "latency_p99": nearest_rank(micros, 0.99) / 1000,
        "latency_p999": nearest_rank(micros, 0.999) / 1000, "latency_max": float(micros.max()) / 1000,
        "latency_mean": float(np.mean(lat)),
    },
})

meta = {"generator": "scripts/reference_metrics.py", "sklearn": sklearn.__version__, "numpy": np.__version__,
        "quantile_definition": "nearest rank: the smallest sample with at least ceil(q*n) samples at or below it"}
json.dump({"meta": meta, "cases": cases}, open(sys.argv[1], "w"))
print("wrote", sys.argv[1])
