#!/usr/bin/env python3
"""Compares a replay's output folder with scripts/reference_replay.py's, with the
tolerances of tests/golden.rs: ROC AUC within 0.001; percentiles at or above the
nearest-rank value and within 2^-10 relative; other values within 1e-9 relative;
samples, states and breach events exact. Exits non-zero on any difference.

    python3 scripts/compare_to_reference.py REPLAY_OUT REFERENCE_OUT
"""
import json
import sys
from datetime import datetime


def millis(t):
    return t if isinstance(t, int) else int(datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp() * 1000)


def key(r):
    return (millis(r["event_time"]), r["model_id"], r["objective"], tuple(sorted(r["segment"].items())))


def main():
    ours_dir, ref_dir = sys.argv[1], sys.argv[2]
    ref = {key(r): r for r in map(json.loads, open(f"{ref_dir}/expected_metrics.jsonl"))}
    ours = {key(r): r for r in map(json.loads, open(f"{ours_dir}/metrics.jsonl"))}
    problems = []
    problems += [f"missing snapshot {k}" for k in sorted(set(ref) - set(ours))[:10]]
    problems += [f"extra snapshot {k}" for k in sorted(set(ours) - set(ref))[:10]]
    for k, want in ref.items():
        got = ours.get(k)
        if got is None:
            continue
        if got["samples"] != want["samples"] or got["state"] != want["state"] or (got["value"] is None) != (want["value"] is None):
            problems.append(f"{k}: ours {got}, reference {want}")
            continue
        g, w = got["value"], want["value"]
        if w is None:
            continue
        if got["metric"] == "roc_auc":
            ok = abs(g - w) <= 1e-3
        elif want["hdr"]:
            ok = w - 1e-9 <= g <= w * (1 + 1 / 1024) + 1e-9
        else:
            ok = abs(g - w) <= 1e-9 * max(1.0, abs(w))
        if not ok:
            problems.append(f"{k}: {got['metric']} ours {g}, reference {w}")

    def breach(r):
        return (r["incident_id"], r["kind"], r["severity"], r["model_id"], r["objective"],
                tuple(sorted(r["segment"].items())), millis(r["event_time"]))
    want_b = [breach(r) for r in map(json.loads, open(f"{ref_dir}/expected_breaches.jsonl"))]
    got_b = [breach(r) for r in map(json.loads, open(f"{ours_dir}/breaches.jsonl"))]
    if want_b != got_b:
        problems.append(f"breach events differ: ours {len(got_b)}, reference {len(want_b)}")
    for p in problems[:20]:
        print(p)
    print(f"{len(ref)} reference snapshots, {len(ours)} replayed; {len(want_b)} breach events; "
          f"{'MATCH' if not problems else f'{len(problems)} differences'}")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
