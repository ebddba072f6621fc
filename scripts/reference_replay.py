#!/usr/bin/env python3
"""Independent reference for slaguard's replay semantics (SPEC §3), written from the spec
with NumPy and scikit-learn, sharing no code or algorithm with the Rust engine: every
window is recomputed from the raw events at every instant (the engine merges summaries).

It handles what the scripted scenario contains — in-order files, delayed, early, late and
duplicate labels, duplicate and malformed lines, acks — and writes the snapshots and
breach events the replay must produce:

    python3 scripts/reference_replay.py --scenario DIR --out tests/fixtures/golden

Exact values are written; tolerances are the test's (tests/golden.rs).
"""
import argparse
import bisect
import hashlib
import json
import math
import os
import struct
from datetime import datetime

import numpy as np
import yaml
from scipy.spatial.distance import jensenshannon
from sklearn.metrics import roc_auc_score

UNITS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


def duration(text):
    text = str(text).strip()
    for unit in ("ms", "s", "m", "h", "d", "w"):
        if text.endswith(unit) and text[: -len(unit)].isdigit():
            return int(text[: -len(unit)]) * UNITS[unit]
    raise ValueError(text)


def timestamp(v):
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, str):
        try:
            return int(round(datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp() * 1000))
        except ValueError:
            return None
    return None


def load_config(path):
    raw = yaml.safe_load(open(path))
    d = raw.get("defaults", {})
    every = duration(d.get("evaluate_every", "1m"))
    defaults = {
        "every": every,
        "label_ttl": duration(d.get("label_ttl", "7d")),
        "early_label_ttl": duration(d.get("early_label_ttl", "1h")),
    }
    models = []
    for m in raw["models"]:
        objectives = []
        for o in m["objectives"]:
            metric = o["metric"]
            objectives.append({
                "name": o["name"], "metric": metric, "op": o["op"], "target": float(o["target"]),
                "warn_at": o.get("warn_at"), "resolve_at": o.get("resolve_at"),
                "window": duration(o["window"]),
                "min_samples": o.get("min_samples", 0 if metric in ("throughput", "request_count") else 1),
                "for": o.get("for", 1), "clear_for": o.get("clear_for", 1),
                "segment_by": o.get("segment_by", m.get("segment_by", [])),
                "feature": o.get("feature"),
            })
        profile = None
        if "reference" in m:
            profile = json.load(open(os.path.join(os.path.dirname(path), m["reference"]["file"])))
        models.append({
            "id": m["model_id"], "task": m["task"], "profile": profile,
            "threshold": m.get("decision_threshold", 0.5), "positive": m.get("positive_label", "1"),
            "label_ttl": duration(m["label_ttl"]) if "label_ttl" in m else defaults["label_ttl"],
            "early_label_ttl": duration(m["early_label_ttl"]) if "early_label_ttl" in m else defaults["early_label_ttl"],
            "objectives": objectives,
        })
    return raw["sla_version"], defaults, models


def is_num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def text(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, str)):
        return str(v)
    return None


def parse_event(line):
    """The JSON object of a line with its request_id, model_id and timestamp, or None."""
    if not line.strip():
        return None
    try:
        e = json.loads(line)
    except json.JSONDecodeError:
        return None
    if not isinstance(e, dict):
        return None
    rid, mid, ts = e.get("request_id"), e.get("model_id"), timestamp(e.get("timestamp"))
    if not isinstance(rid, str) or not rid.strip() or not isinstance(mid, str) or ts is None:
        return None
    return e, rid, mid, ts


def read_inferences(path, models):
    out, seen = [], set()
    for line in open(path, encoding="utf-8"):
        parsed = parse_event(line)
        if parsed is None:
            continue
        e, rid, mid, ts = parsed
        status = e.get("status", "ok")
        if status not in ("ok", "error", "timeout"):
            continue
        lat = e.get("latency_ms")
        if lat is not None and (not is_num(lat) or lat < 0):
            continue
        if mid not in models:
            continue
        m = models[mid]
        p = e.get("prediction") or {}
        score = p.get("score")
        if score is not None and (not is_num(score) or not 0 <= score <= 1):
            continue
        if status == "ok":
            if m["task"] == "binary_classification" and score is None and p.get("label") is None:
                continue
            if m["task"] == "regression" and not is_num(p.get("value")):
                continue
        attrs = {k: text(v) for k, v in (e.get("attributes") or {}).items() if v is not None}
        if "model_version" not in attrs and e.get("model_version") is not None:
            attrs["model_version"] = e["model_version"]
        ev = {"t": ts, "model": mid, "rid": rid, "ok": status == "ok", "latency": lat,
              "features": e.get("features") or {},
              "score": score, "plabel": text(p.get("label")), "value": p.get("value"), "attrs": attrs}
        key = (mid, rid)
        ev["duplicate"] = key in seen
        seen.add(key)
        out.append(ev)
    return out


def read_labels(path, models):
    out, seen = [], set()
    for line in open(path, encoding="utf-8"):
        parsed = parse_event(line)
        if parsed is None:
            continue
        e, rid, mid, ts = parsed
        if e.get("label") is None and e.get("value") is None:
            continue
        if mid not in models:
            continue
        task = models[mid]["task"]
        if task == "regression" and not is_num(e.get("value")):
            continue
        if task != "regression" and e.get("label") is None:
            continue
        key = (mid, rid)
        ev = {"t": ts, "model": mid, "rid": rid, "label": text(e.get("label")), "value": e.get("value"),
              "duplicate": key in seen}
        seen.add(key)
        out.append(ev)
    return out


def incident_id(model, objective, segment, opened_at):
    h = hashlib.sha256()
    h.update(model.encode() + b"\0" + objective.encode() + b"\0")
    for k, v in segment:
        h.update(k.encode() + b"\1" + v.encode() + b"\0")
    h.update(struct.pack(">q", opened_at))
    return h.hexdigest()[:32]


def holds(op, v, t):
    return {">=": v >= t, ">": v > t, "<=": v <= t, "<": v < t}[op]


def nearest_rank(sorted_values, q):
    n = len(sorted_values)
    rank = max(1, math.ceil(q * n))
    return float(sorted_values[rank - 1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenario", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    sla_version, defaults, model_list = load_config(f"{args.scenario}/sla.yaml")
    models = {m["id"]: m for m in model_list}
    every = defaults["every"]
    infs = read_inferences(f"{args.scenario}/inferences.jsonl", models)
    labs = read_labels(f"{args.scenario}/labels.jsonl", models)
    acks = []
    for line in open(f"{args.scenario}/acks.jsonl"):
        if line.strip():
            a = json.loads(line)
            acks.append((timestamp(a["timestamp"]), a))
    acks.sort(key=lambda x: x[0])

    all_times = [e["t"] for e in infs] + [e["t"] for e in labs]
    first_time, last_time = min(all_times), max(all_times)

    # The join, from the definitions: first prediction and first label per request.
    preds = {(e["model"], e["rid"]): e for e in infs if not e["duplicate"] and e["ok"]}
    firsts = {(e["model"], e["rid"]): e for e in labs if not e["duplicate"]}
    outcomes = {m: [] for m in models}   # (time, prediction, label)
    unlabeled = {m: [] for m in models}  # (deadline, prediction)
    joined_keys = set()
    for key, l in firsts.items():
        p = preds.get(key)
        if p is None:
            continue
        m = models[key[0]]
        if l["t"] >= p["t"]:
            ok = l["t"] <= p["t"] + m["label_ttl"]
        else:
            ok = p["t"] <= l["t"] + m["early_label_ttl"]
        if ok:
            joined_keys.add(key)
            outcomes[key[0]].append((max(p["t"], l["t"]), p, l))
    for key, p in preds.items():
        if key not in joined_keys:
            unlabeled[key[0]].append((p["t"] + models[key[0]]["label_ttl"], p))

    first_instant = first_time // every + 1
    last_instant = last_time // every
    metrics_out, breaches_out = [], []
    trackers = {}  # (model, objective, segment tuple) -> dict

    def window_slice(times, lo, hi):
        return bisect.bisect_left(times, lo), bisect.bisect_left(times, hi)

    per_model = {}
    for mid, m in models.items():
        inf = sorted((e for e in infs if e["model"] == mid and not e["duplicate"]), key=lambda e: e["t"])
        outs = sorted(outcomes[mid], key=lambda x: x[0])
        unl = sorted(unlabeled[mid], key=lambda x: x[0])
        per_model[mid] = {
            "inf": inf, "inf_t": [e["t"] for e in inf],
            "out": outs, "out_t": [x[0] for x in outs],
            "unl": unl, "unl_t": [x[0] for x in unl],
            "start": min([e["t"] for e in inf] + [x[0] for x in outs] + [float("inf")]),
        }

    def measure(m, o, d, lo, hi, seg):
        def match(attrs):
            return all(attrs.get(k, "__missing__") == v for k, v in seg)
        metric = o["metric"]
        if metric in ("psi", "js_distance", "ks", "missing_rate"):
            a, b = window_slice(d["inf_t"], lo, hi)
            evs = [e for e in d["inf"][a:b] if match(e["attrs"])]
            name = o["feature"]
            if metric == "missing_rate":
                n = len(evs)
                missing = sum(1 for e in evs if e["features"].get(name) is None)
                return (missing / n if n else None), n, False
            prof = m["profile"]["features"][name]
            if prof["type"] == "numeric":
                values = [e["features"][name] for e in evs if is_num(e["features"].get(name))]
                edges = np.asarray(prof["edges"], dtype=float)
                expected = np.asarray(prof["proportions"], dtype=float)
                counts = np.bincount(np.searchsorted(edges, np.asarray(values, dtype=float), side="right"), minlength=len(expected))
            else:
                cats = sorted(prof["proportions"])
                expected = [prof["proportions"][c] for c in cats]
                if "__other__" not in prof["proportions"]:
                    expected.append(0.0)
                expected = np.asarray(expected)
                counts = np.zeros(len(expected), dtype=int)
                for e in evs:
                    v = e["features"].get(name)
                    if not isinstance(v, str):
                        continue
                    i = cats.index(v) if v in cats else (cats.index("__other__") if "__other__" in cats else len(cats))
                    counts[i] += 1
            n = int(counts.sum())
            if n == 0:
                return None, 0, False
            actual = counts / n
            if metric == "psi":
                e_, a_ = np.maximum(expected, 1e-4), np.maximum(actual, 1e-4)
                return float(np.sum((a_ - e_) * np.log(a_ / e_))), n, False
            if metric == "ks":
                return float(np.max(np.abs(np.cumsum(expected) - np.cumsum(actual)))), n, False
            return float(jensenshannon(expected, actual, base=2)), n, False
        if metric in ("error_rate", "availability", "throughput", "request_count") or metric.startswith("latency_"):
            a, b = window_slice(d["inf_t"], lo, hi)
            evs = [e for e in d["inf"][a:b] if match(e["attrs"])]
            if metric.startswith("latency_"):
                lat = sorted(math.floor(e["latency"] * 1000 + 0.5) for e in evs if e["latency"] is not None)
                n = len(lat)
                if n == 0:
                    return None, 0, False
                if metric == "latency_mean":
                    return float(np.mean([e["latency"] for e in evs if e["latency"] is not None])), n, False
                if metric == "latency_max":
                    return lat[-1] / 1000.0, n, True
                q = {"latency_p50": .5, "latency_p90": .9, "latency_p95": .95, "latency_p99": .99, "latency_p999": .999}[metric]
                return nearest_rank(lat, q) / 1000.0, n, True
            n = len(evs)
            errors = sum(1 for e in evs if not e["ok"])
            if metric == "error_rate":
                return (errors / n if n else None), n, False
            if metric == "availability":
                return ((n - errors) / n if n else None), n, False
            covered = hi - o["window"] >= first_time
            if metric == "throughput":
                return (n / (o["window"] / 1000.0) if covered else None), n, False
            return (float(n) if covered else None), n, False
        a, b = window_slice(d["out_t"], lo, hi)
        outs = [(t, p, l) for t, p, l in d["out"][a:b] if match(p["attrs"])]
        if metric.startswith("label_"):
            ua, ub = window_slice(d["unl_t"], lo, hi)
            expired = sum(1 for _, p in d["unl"][ua:ub] if match(p["attrs"]))
            joined = len(outs)
            if metric == "label_coverage":
                total = joined + expired
                return (joined / total if total else None), total, False
            delays = sorted(max(0, l["t"] - p["t"]) for _, p, l in outs)
            if not delays:
                return None, 0, False
            return nearest_rank(delays, {"label_delay_p50": .5, "label_delay_p95": .95}[metric]), joined, True
        n = len(outs)
        if m["task"] == "regression":
            if n == 0:
                return None, 0, False
            err = np.array([p["value"] - l["value"] for _, p, l in outs])
            if metric == "mae":
                return float(np.mean(np.abs(err))), n, False
            if metric == "rmse":
                return float(math.sqrt(np.mean(err ** 2))), n, False
        y = np.array([l["label"] == m["positive"] for _, p, l in outs], dtype=bool)
        yhat = np.array([(p["score"] >= m["threshold"]) if p["score"] is not None else (p["plabel"] == m["positive"]) for _, p, l in outs], dtype=bool)
        if metric == "accuracy":
            return (float(np.mean(y == yhat)) if n else None), n, False
        if metric == "roc_auc":
            scored = [(l["label"] == m["positive"], p["score"]) for _, p, l in outs if p["score"] is not None]
            ys = [a for a, _ in scored]
            if not scored or all(ys) or not any(ys):
                return None, len(scored), False
            return float(roc_auc_score(ys, [s for _, s in scored])), len(scored), False
        raise ValueError(f"reference does not compute {metric}")

    ack_i = 0

    def apply_ack(t, a):
        m = a["model_id"]
        obj = a["objective"]
        seg = tuple(sorted(a.get("segment", {}).items()))
        for key, tr in trackers.items():
            if key[0] == m and key[1] == obj and tuple(sorted(key[2])) == seg and tr["open"]:
                if tr["open"]["acked"]:
                    return
                tr["open"]["acked"] = True
                breaches_out.append({"incident_id": tr["open"]["id"], "kind": "acknowledged", "severity": tr["open"]["severity"],
                                     "model_id": m, "objective": obj, "segment": dict(key[2]), "event_time": t})
                return

    for n in range(first_instant, last_instant + 1):
        T = n * every
        while ack_i < len(acks) and acks[ack_i][0] < T:
            apply_ack(*acks[ack_i])
            ack_i += 1
        for mid, m in models.items():
            d = per_model[mid]
            if d["start"] >= T:
                continue
            for o in m["objectives"]:
                lo = T - o["window"]
                dims = o["segment_by"]
                segs = {()}
                if dims:
                    a, b = window_slice(d["inf_t"], lo, T)
                    source = []
                    if o["metric"] in ("error_rate", "availability", "throughput", "request_count") or o["metric"].startswith("latency_"):
                        source = [e["attrs"] for e in d["inf"][a:b] if o["metric"] in ("error_rate", "availability", "throughput", "request_count") or e["latency"] is not None]
                    else:
                        oa, ob = window_slice(d["out_t"], lo, T)
                        source = [p["attrs"] for _, p, _ in d["out"][oa:ob]]
                        if o["metric"].startswith("label_"):
                            ua, ub = window_slice(d["unl_t"], lo, T)
                            source += [p["attrs"] for _, p in d["unl"][ua:ub]]
                    for attrs in source:
                        segs.add(tuple((k, attrs.get(k, "__missing__")) for k in dims))
                    segs |= {k[2] for k, tr in trackers.items() if k[0] == mid and k[1] == o["name"] and (tr["open"] or tr["bad"] or tr["good"])}
                for seg in sorted(segs):
                    value, samples, hdr = measure(m, o, d, lo, T, seg)
                    if value is None or samples < o["min_samples"]:
                        state = "insufficient_data"
                    elif not holds(o["op"], value, o["target"]):
                        state = "critical"
                    elif o["warn_at"] is not None and not holds(o["op"], value, o["warn_at"]):
                        state = "warning"
                    else:
                        state = "ok"
                    metrics_out.append({"event_time": T, "model_id": mid, "objective": o["name"], "segment": dict(seg),
                                        "value": value, "samples": samples, "state": state, "hdr": hdr})
                    key = (mid, o["name"], seg)
                    tr = trackers.setdefault(key, {"bad": 0, "good": 0, "open": None})
                    ev = None
                    if state == "insufficient_data":
                        tr["bad"] = tr["good"] = 0
                    elif tr["open"] is None:
                        if state in ("warning", "critical"):
                            tr["bad"] += 1
                            if tr["bad"] >= o["for"]:
                                tr["bad"] = tr["good"] = 0
                                tr["open"] = {"id": incident_id(mid, o["name"], seg, T), "severity": state, "acked": False}
                                ev = "opened"
                        else:
                            tr["bad"] = 0
                    else:
                        healthy = state == "ok" and (o["resolve_at"] is None or holds(o["op"], value, o["resolve_at"]))
                        if healthy:
                            tr["good"] += 1
                            if tr["good"] >= o["clear_for"]:
                                ev = "resolved"
                        else:
                            tr["good"] = 0
                            if state in ("warning", "critical") and state != tr["open"]["severity"]:
                                tr["open"]["severity"] = state
                                ev = "severity_changed"
                    if ev:
                        breaches_out.append({"incident_id": tr["open"]["id"], "kind": ev, "severity": tr["open"]["severity"],
                                             "model_id": mid, "objective": o["name"], "segment": dict(seg), "event_time": T})
                        if ev == "resolved":
                            tr["open"] = None
                            tr["bad"] = tr["good"] = 0
    while ack_i < len(acks):
        apply_ack(*acks[ack_i])
        ack_i += 1

    with open(f"{args.out}/expected_metrics.jsonl", "w") as f:
        for r in metrics_out:
            f.write(json.dumps(r) + "\n")
    with open(f"{args.out}/expected_breaches.jsonl", "w") as f:
        for r in breaches_out:
            f.write(json.dumps(r) + "\n")
    digests = {}
    for name in ("inferences.jsonl", "labels.jsonl", "acks.jsonl", "sla.yaml"):
        digests[name] = hashlib.sha256(open(f"{args.scenario}/{name}", "rb").read()).hexdigest()
    with open(f"{args.out}/inputs.json", "w") as f:
        json.dump({"sha256": digests, "sla_version": sla_version}, f, indent=1)
    print(f"{len(metrics_out)} snapshots, {len(breaches_out)} breach events")


if __name__ == "__main__":
    main()
