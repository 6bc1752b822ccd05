#!/usr/bin/env bash
# Detection quality on generated practices: for each seed, generate a practice, ingest it, detect, and score the
# run against the truth file. Prints one markdown table row per seed and the mean.
#   benches/detection_quality.sh [SEEDS...]      (default seeds: 3 4 5 11 12; PATIENTS=1000 DAYS=56)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/accesswatch-target}"
cargo build --release --quiet
bin="$CARGO_TARGET_DIR/release/accesswatch"
patients="${PATIENTS:-1000}"; days="${DAYS:-56}"; as_of="2026-11-22"
seeds=("$@"); [ ${#seeds[@]} -gt 0 ] || seeds=(3 4 5 11 12)
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
echo "| seed | patients | monitored | flagged | precision | recall | F1 | precision@k | average precision |"
echo "|---|---|---|---|---|---|---|---|---|"
for seed in "${seeds[@]}"; do
  d="$work/$seed"
  "$bin" generate --out "$d/data" --patients "$patients" --days "$days" --seed "$seed" --as-of "$as_of" >/dev/null
  "$bin" ingest --store "$d/store" "$d/data" >/dev/null
  "$bin" detect --store "$d/store" --as-of "$as_of" --out "$d/reports" >/dev/null
  "$bin" evaluate --json --truth "$d/data/truth.csv" --report "$d/reports/$as_of" > "$d/eval.json"
  python3 - "$seed" "$d/eval.json" <<'PY'
import json, sys
e = json.load(open(sys.argv[2]))
print(f"| {sys.argv[1]} | {e['patients']} | {e['monitored']} | {e['flagged']} | {e['precision']:.3f} | {e['recall']:.3f} | {e['f1']:.3f} | {e['precision_at_k']:.3f} | {e['average_precision']:.3f} |")
PY
done
python3 - "$work" <<'PY'
import json, sys, glob, collections
runs = [json.load(open(p)) for p in sorted(glob.glob(sys.argv[1] + "/*/eval.json"))]
keys = ["precision", "recall", "f1", "precision_at_k", "average_precision"]
print("| mean | | | | " + " | ".join(f"{sum(r[k] for r in runs) / len(runs):.3f}" for k in keys) + " |")
scen = collections.defaultdict(lambda: [0, 0])
pers = collections.defaultdict(lambda: [0, 0])
for r in runs:
    for k, v in r["per_scenario"].items():
        scen[k][0] += v["flagged"]; scen[k][1] += v["monitored"]
    for k, v in r["per_persona"].items():
        pers[k][0] += v["flagged"]; pers[k][1] += v["patients"]
print("\n| scenario | recall |\n|---|---|")
for k, (f, n) in sorted(scen.items()):
    print(f"| {k} | {f}/{n} = {f / n:.2f} |")
print("\n| benign persona | false flags |\n|---|---|")
for k, (f, n) in sorted(pers.items()):
    print(f"| {k} | {f}/{n} = {f / n:.3f} |")
PY
