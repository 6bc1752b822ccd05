#!/usr/bin/env bash
# Detection quality: generate practices, ingest, detect, and score each run against its truth file.
#
#   benches/detection_quality.sh [SEEDS...]   one row per seed of the default generator settings, then the mean,
#                                             recall per scenario and false flags per benign persona
#   benches/detection_quality.sh --matrix     the robustness table: every variant x 3 seeds (mean of the three),
#                                             plus the external practice in ../shared/practices/external-a if present
#
# Variants: default (mixed onsets and intensities), established-only (every watcher began before the data),
# recent-only, subtle-only, no device ids, no session ids, the bare export (no device id, user agent, address,
# session or account), the audit events as FHIR NDJSON read without a session extension, and apps reinstalled (three
# in ten devices with ten sessions or more take a new id and app version part-way through, as real installations do).
# PATIENTS (default 1500) and DAYS (default 90) size each practice; MATRIX_SEEDS (default "1 2 3").
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/accesswatch-target}"
cargo build --release --quiet
bin="$CARGO_TARGET_DIR/release/accesswatch"
patients="${PATIENTS:-1500}"; days="${DAYS:-90}"; as_of="2026-11-22"
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT

# run_one DIR SEED [generate options...]: a practice, its store, its run folder and eval.json in DIR.
run_one() {
  local d="$1" seed="$2"; shift 2
  local fhir=0
  for a in "$@"; do [ "$a" = "--fhir" ] && fhir=1; done
  "$bin" generate --out "$d/data" --patients "$patients" --days "$days" --seed "$seed" --as-of "$as_of" "$@" >/dev/null
  if [ "$fhir" = 1 ]; then
    "$bin" ingest --store "$d/store" "$d/data/fhir" "$d/data/entries.csv" "$d/data/appointments.csv" \
      "$d/data/proxies.csv" >/dev/null
  else
    "$bin" ingest --store "$d/store" "$d/data/audit.csv" "$d/data/entries.csv" "$d/data/appointments.csv" \
      "$d/data/proxies.csv" >/dev/null
  fi
  "$bin" detect --store "$d/store" --as-of "$as_of" --out "$d/reports" >/dev/null || true
  "$bin" evaluate --json --truth "$d/data.truth.csv" --report "$d/reports/$as_of" > "$d/eval.json"
}

summarise() { # summarise LABEL EVAL_JSON...
  python3 - "$@" <<'PY'
import json, sys
label, paths = sys.argv[1], sys.argv[2:]
runs = [json.load(open(p)) for p in paths]
mean = lambda k: sum(r[k] for r in runs) / len(runs)
worst = 0.0
for r in runs:
    for name, v in r["per_persona"].items():
        if v["patients"] >= 5:
            worst = max(worst, v["false_flag_rate"])
print(f"| {label} | {len(runs)} | {mean('precision'):.3f} | {mean('recall'):.3f} | {mean('average_precision'):.3f} | {worst:.3f} |")
PY
}

if [ "${1:-}" = "--matrix" ]; then
  seeds=(${MATRIX_SEEDS:-1 2 3})
  echo "| variant | runs | precision | recall | average precision | worst benign persona false-flag rate |"
  echo "|---|---|---|---|---|---|"
  variants=(
    "default|"
    "established-only|--onset established"
    "recent-only|--onset recent"
    "subtle-only|--intensity subtle"
    "no device ids|--drop-columns device_id"
    "no session ids|--drop-columns session_id"
    "bare export|--drop-columns device_id,user_agent,ip_address,session_id,account_id"
    "FHIR, no session extension|--fhir"
    "apps reinstalled|--reinstalls 0.3"
  )
  for v in "${variants[@]}"; do
    label="${v%%|*}"; opts="${v#*|}"
    evals=()
    for seed in "${seeds[@]}"; do
      d="$work/$(echo "$label" | tr -c 'a-z0-9' '_')-$seed"
      # shellcheck disable=SC2086
      run_one "$d" "$seed" $opts
      evals+=("$d/eval.json")
    done
    summarise "$label" "${evals[@]}"
  done
  ext="../shared/practices/external-a"
  if [ -f "$ext/truth.csv" ]; then
    d="$work/external-a"
    "$bin" ingest --store "$d/store" "$ext/audit.csv.gz" "$ext/entries.csv.gz" "$ext/appointments.csv.gz" \
      "$ext/proxies.csv" >/dev/null
    "$bin" detect --store "$d/store" --as-of 2026-06-30 --out "$d/reports" >/dev/null || true
    "$bin" evaluate --json --truth "$ext/truth.csv" --report "$d/reports/2026-06-30" > "$d/eval.json"
    summarise "external-a (independent simulator)" "$d/eval.json"
  fi
  exit 0
fi

seeds=("$@"); [ ${#seeds[@]} -gt 0 ] || seeds=(3 4 5)
echo "| seed | patients | monitored | flagged | precision | recall | F1 | precision@k | average precision |"
echo "|---|---|---|---|---|---|---|---|---|"
for seed in "${seeds[@]}"; do
  d="$work/$seed"
  run_one "$d" "$seed"
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
