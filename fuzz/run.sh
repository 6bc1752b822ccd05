#!/usr/bin/env bash
# Fuzzes accesswatch's parsers: the CSV row validator, the FHIR JSON and XML readers, and the config parser.
# Usage: fuzz/run.sh [seconds per target (default 180)] [target ...]
# Needs the nightly toolchain (`rustup toolchain install nightly`) and cargo-fuzz (`cargo install cargo-fuzz`).
# Seeds come from the repository's own fixtures; a crash leaves its input in fuzz/artifacts/<target>/: copy it into
# tests/fixtures/fuzz/<target>/ so the regression test replays it for ever, then fix the parser.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
secs=${1:-180}
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(csv_rows fhir_json fhir_xml config)
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-$HOME/.cache/accesswatch-fuzz-target}
cd "$here"

seed() {
  local t=$1 dir=$here/corpus/$1
  mkdir -p "$dir"
  case $t in
    csv_rows)
      for f in "$repo"/sample_data/*.csv; do head -40 "$f" > "$dir/seed-$(basename "$f")"; done ;;
    fhir_json)
      find "$repo/tests/fixtures/auditevent" -name '*.json' -exec cp {} "$dir/" \; ;;
    fhir_xml)
      find "$repo/tests/fixtures/auditevent" -name '*.xml' -exec cp {} "$dir/" \; ;;
    config)
      # Every TOML example in the README, one file each.
      awk -v dir="$dir" '/^```toml/{n++; on=1; next} /^```/{on=0} on{print > (dir "/readme-" n ".toml")}' "$repo/README.md" ;;
  esac
  # Inputs that once broke a parser are seeds too.
  if [ -d "$repo/tests/fixtures/fuzz/$t" ]; then cp "$repo/tests/fixtures/fuzz/$t"/* "$dir/" 2>/dev/null || true; fi
}

printf '%-10s %8s %10s %s\n' target seconds corpus result
for t in "${targets[@]}"; do
  seed "$t"
  log=$(mktemp)
  if cargo +nightly fuzz run --sanitizer none "$t" "corpus/$t" -- \
      -max_total_time="$secs" -max_len=65536 -timeout=10 -rss_limit_mb=2048 >"$log" 2>&1; then
    result=ok
  else
    result="CRASH: see $log and fuzz/artifacts/$t/"
  fi
  printf '%-10s %8s %10s %s\n' "$t" "$secs" "$(ls "corpus/$t" | wc -l)" "$result"
  [ "$result" = ok ] && rm -f "$log"
done
