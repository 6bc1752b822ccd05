#!/usr/bin/env bash
# accesswatch against DuckDB on the same machine, the same input and the same output shape.
#   benches/bench.sh                 # 1M and 10M audit events
#   BENCH_EVENTS="1000000" benches/bench.sh
#   BENCH_EVENTS="100000000" benches/bench.sh   # the optional 100M run (needs ~15 GB of disk)
# For each size it generates the events (generate --events), then times, with peak memory from /usr/bin/time -v:
#   ingest   accesswatch ingest of the CSV  vs  DuckDB converting the same CSV to hive-partitioned zstd Parquet
#   detect   accesswatch detect over the store  vs  DuckDB running SQL equivalents of three rules over the Parquet
# and, once, FHIR NDJSON ingest (a generated practice of BENCH_FHIR_PATIENTS patients, default 20000, as
# AuditEvent NDJSON) against DuckDB reading the same NDJSON into Parquet; and prints a markdown table.
# BENCH_CONFIG=FILE passes a config to accesswatch (e.g. `[detect] batch_events = 20000000` for the 100M run);
# BENCH_SKIP_FHIR=1 leaves out the FHIR rows. BENCH_PRACTICE_PATIENTS (default 200000, 0 to leave out) sizes the
# whole-practice rows: ingest + detect of all four CSVs against DuckDB loading them and running benches/catalogue.sql. Each size also gets an "end to end" row: ingest + detect. Needs python3 with duckdb (pip install duckdb) and GNU time (apt-get install time).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/accesswatch-target}"
cargo build --release --quiet
bin="$CARGO_TARGET_DIR/release/accesswatch"
aw=("$bin")
[ -n "${BENCH_CONFIG:-}" ] && aw+=(--config "$(realpath "$BENCH_CONFIG")")
work="${BENCH_DIR:-$(mktemp -d)}"
trap '[ -z "${BENCH_KEEP:-}" ] && rm -rf "$work"' EXIT
as_of="2026-11-22"

# seconds and peak RSS (MB) of a command, from GNU time.
measure() {
  local log="$work/time.log"
  /usr/bin/time -v "$@" > "$work/out.log" 2> "$log" || { cat "$work/out.log" "$log" >&2; exit 1; }
  local wall rss
  wall=$(grep "Elapsed (wall clock)" "$log" | awk '{print $NF}')
  rss=$(grep "Maximum resident set size" "$log" | awk '{print $NF}')
  python3 -c "import sys; p=sys.argv[1].split(':'); s=sum(float(x)*60**i for i,x in enumerate(reversed(p))); print(f'{s:.2f} {int(sys.argv[2])/1024:.0f}')" "$wall" "$rss"
}

echo "| events | stage | tool | seconds | rows/s | peak RSS (MB) | accesswatch / DuckDB |"
echo "|---|---|---|---|---|---|---|"
for n in ${BENCH_EVENTS:-1000000 10000000}; do
  d="$work/$n"; mkdir -p "$d"
  patients=$(( n / 100 > 1000 ? n / 100 : 1000 ))
  "$bin" generate --out "$d/in" --events "$n" --patients "$patients" --days 90 --seed 7 --as-of "$as_of" > /dev/null
  # A sensitive entry for one patient in fifty, a day before the end, for the third rule.
  python3 - "$d/in/audit.csv" "$d/in/entries.csv" <<'PY'
import csv, sys, itertools
seen = {}  # first-seen order; a dict, not a list, so 100M events (a million patients) stay linear
with open(sys.argv[1]) as f:
    for row in itertools.islice(csv.DictReader(f), 200000):
        seen.setdefault(row["nhs_number"], None)
seen = list(seen)
with open(sys.argv[2], "w", newline="") as f:
    w = csv.writer(f, lineterminator="\n")
    w.writerow(["entry_id", "nhs_number", "recorded_at", "code", "term", "section", "visible_online"])
    for i, n in enumerate(seen[::50]):
        w.writerow([f"B{i}", n, "2026-11-20T10:00:00Z", "205171000000107", "Victim of domestic violence", "problems", "true"])
PY
  read -r aw_s aw_m < <(measure "${aw[@]}" ingest --store "$d/store" "$d/in/audit.csv" "$d/in/entries.csv")
  read -r db_s db_m < <(measure python3 - "$d/in/audit.csv" "$d/duck" <<'PY'
import duckdb, sys
con = duckdb.connect()
con.execute("SET threads TO 2")
con.execute(f"""COPY (SELECT *, CAST(occurred_at AS DATE) AS date FROM read_csv('{sys.argv[1]}', header = true,
    types = {{'occurred_at': 'TIMESTAMPTZ', 'nhs_number': 'VARCHAR'}}))
    TO '{sys.argv[2]}' (FORMAT PARQUET, PARTITION_BY (date), COMPRESSION ZSTD, OVERWRITE_OR_IGNORE)""")
PY
)
  python3 -c "import sys; n,a,am,b,bm=int(sys.argv[1]),float(sys.argv[2]),sys.argv[3],float(sys.argv[4]),sys.argv[5]; print(f'| {n:,} | ingest | accesswatch | {a:.1f} | {n/a:,.0f} | {am} | {a/b:.2f} |'); print(f'| {n:,} | ingest | DuckDB | {b:.1f} | {n/b:,.0f} | {bm} | |')" "$n" "$aw_s" "$aw_m" "$db_s" "$db_m"
  read -r ad_s ad_m < <(measure "${aw[@]}" detect --store "$d/store" --as-of "$as_of" --out "$d/reports")
  read -r dd_s dd_m < <(measure python3 - "$d/duck" "$d/in/entries.csv" "$as_of" <<'PY'
import duckdb, sys
con = duckdb.connect()
con.execute("SET threads TO 2")
con.execute(f"CREATE VIEW audit AS SELECT * FROM read_parquet('{sys.argv[1]}/**/*.parquet', hive_partitioning = true)")
con.execute(f"CREATE VIEW entries AS SELECT * FROM read_csv('{sys.argv[2]}', header = true, types = {{'nhs_number': 'VARCHAR', 'recorded_at': 'TIMESTAMPTZ'}})")
end = f"TIMESTAMPTZ '{sys.argv[3]} 23:59:59+00'"
recent = f"{end} - INTERVAL 14 DAY"
# unfamiliar device: a device first seen in the recent window while a device used before it is still used after.
con.execute(f"""
WITH s AS (SELECT nhs_number, device_id, MIN(occurred_at) AS first_seen, MAX(occurred_at) AS last_seen FROM audit GROUP BY 1, 2)
SELECT n.nhs_number, n.device_id FROM s n JOIN s o ON o.nhs_number = n.nhs_number AND o.device_id <> n.device_id
WHERE n.first_seen >= {recent} AND o.first_seen < {recent} AND o.last_seen > n.first_seen""").fetchall()
# unusual hour: recent sessions at hours holding under 2% of the patient's earlier events.
con.execute(f"""
WITH base AS (SELECT nhs_number, hour(occurred_at) AS h, COUNT(*) AS n FROM audit WHERE occurred_at < {recent} GROUP BY 1, 2),
tot AS (SELECT nhs_number, SUM(n) AS t FROM base GROUP BY 1)
SELECT a.nhs_number, COUNT(*) FROM audit a JOIN tot USING (nhs_number) LEFT JOIN base b ON b.nhs_number = a.nhs_number AND b.h = hour(a.occurred_at)
WHERE a.occurred_at >= {recent} AND COALESCE(b.n, 0) < 0.02 * tot.t GROUP BY 1""").fetchall()
# access after a sensitive entry: views within 48 h from a device not used on the record before the entry.
con.execute(f"""
SELECT e.nhs_number, a.device_id, COUNT(*) FROM entries e JOIN audit a ON a.nhs_number = e.nhs_number
WHERE a.action = 'view' AND a.occurred_at BETWEEN e.recorded_at AND e.recorded_at + INTERVAL 48 HOUR
AND NOT EXISTS (SELECT 1 FROM audit p WHERE p.nhs_number = a.nhs_number AND p.device_id = a.device_id AND p.occurred_at < e.recorded_at)
GROUP BY 1, 2""").fetchall()
PY
)
  python3 -c "import sys; n,a,am,b,bm=int(sys.argv[1]),float(sys.argv[2]),sys.argv[3],float(sys.argv[4]),sys.argv[5]; print(f'| {n:,} | detect | accesswatch | {a:.1f} | {n/a:,.0f} | {am} | {a/b:.2f} |'); print(f'| {n:,} | detect (3 rules) | DuckDB | {b:.1f} | {n/b:,.0f} | {bm} | |')" "$n" "$ad_s" "$ad_m" "$dd_s" "$dd_m"
  python3 -c "import sys; n=int(sys.argv[1]); a=float(sys.argv[2])+float(sys.argv[3]); print(f'| {n:,} | end to end (ingest + detect) | accesswatch | {a:.1f} | {n/a:,.0f} | {max(int(sys.argv[4]), int(sys.argv[5]))} | |')" "$n" "$aw_s" "$ad_s" "$aw_m" "$ad_m"
  rm -rf "$d"
done

# A whole practice (issue 16's second target): BENCH_PRACTICE_PATIENTS patients over 90 days (default 200000; 0
# leaves it out), all four CSVs. accesswatch ingests them and detects, against DuckDB loading the same CSVs and
# running the rule catalogue as a first analyst's plain SQL (benches/catalogue.sql, one CTE per rule, through
# benches/catalogue.py).
pp="${BENCH_PRACTICE_PATIENTS:-200000}"
if [ "$pp" != 0 ]; then
  g="$work/practice"; mkdir -p "$g"
  "$bin" generate --out "$g/in" --patients "$pp" --days 90 --seed 7 --as-of "$as_of" > /dev/null
  events=$(( $(wc -l < "$g/in/audit.csv") - 1 ))
  inputs=("$g/in/audit.csv" "$g/in/entries.csv" "$g/in/appointments.csv" "$g/in/proxies.csv")
  read -r pi_s pi_m < <(measure "${aw[@]}" ingest --store "$g/store" "${inputs[@]}")
  read -r pd_s pd_m < <(measure "${aw[@]}" detect --store "$g/store" --as-of "$as_of" --out "$g/reports")
  read -r pq_s pq_m < <(measure python3 benches/catalogue.py "$g/in" "$as_of" "$g/sql")
  python3 -c "import sys; n,p,a,am,b,bm,c,cm=int(sys.argv[1]),int(sys.argv[2]),float(sys.argv[3]),int(sys.argv[4]),float(sys.argv[5]),int(sys.argv[6]),float(sys.argv[7]),sys.argv[8]; print(f'| {n:,} | practice of {p:,} patients: ingest + detect | accesswatch | {a+b:.1f} (ingest {a:.1f}, detect {b:.1f}) | {n/(a+b):,.0f} | {max(am, bm)} | {(a+b)/c:.2f} |'); print(f'| {n:,} | practice: load the CSVs + the nine-rule SQL catalogue | DuckDB | {c:.1f} | {n/c:,.0f} | {cm} | |')" "$events" "$pp" "$pi_s" "$pi_m" "$pd_s" "$pd_m" "$pq_s" "$pq_m"
  rm -rf "$g"
fi
[ -n "${BENCH_SKIP_FHIR:-}" ] && exit 0

# FHIR AuditEvent NDJSON: a generated practice written as FHIR, ingested by accesswatch and read by DuckDB.
f="$work/fhir"; mkdir -p "$f"
"$bin" generate --out "$f/in" --patients "${BENCH_FHIR_PATIENTS:-20000}" --days 90 --seed 7 --as-of "$as_of" --fhir > /dev/null
events=$(wc -l < "$f/in/fhir/audit.ndjson")
read -r af_s af_m < <(measure "${aw[@]}" ingest --store "$f/store" "$f/in/fhir/audit.ndjson")
read -r df_s df_m < <(measure python3 - "$f/in/fhir/audit.ndjson" "$f/duck.parquet" <<'PY'
import duckdb, sys
con = duckdb.connect()
con.execute("SET threads TO 2")
con.execute(f"COPY (SELECT * FROM read_json('{sys.argv[1]}', format = 'newline_delimited')) TO '{sys.argv[2]}' (FORMAT PARQUET, COMPRESSION ZSTD)")
PY
)
python3 -c "import sys; n,a,am,b,bm=int(sys.argv[1]),float(sys.argv[2]),sys.argv[3],float(sys.argv[4]),sys.argv[5]; print(f'| {n:,} | FHIR NDJSON ingest (validated, mapped) | accesswatch | {a:.1f} | {n/a:,.0f} | {am} | {a/b:.2f} |'); print(f'| {n:,} | NDJSON to Parquet (no mapping) | DuckDB | {b:.1f} | {n/b:,.0f} | {bm} | |')" "$events" "$af_s" "$af_m" "$df_s" "$df_m"
