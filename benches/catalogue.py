#!/usr/bin/env python3
"""Runs benches/catalogue.sql (the rule catalogue as a first analyst's plain SQL) with DuckDB on two threads.

    python3 benches/catalogue.py DATA_DIR AS_OF OUT_DIR

DATA_DIR holds audit.csv, entries.csv, appointments.csv and proxies.csv (each may be .gz). The SQL loads them and
writes OUT_DIR/patients.csv, which `accesswatch evaluate --report OUT_DIR` reads. A thin export's missing optional
columns are added empty, as the analyst's query expects them. Needs python3 with duckdb (pip install duckdb).
"""
import pathlib
import sys

import duckdb

OPTIONAL_AUDIT = ["event_id", "account_id", "actor_role", "device_id", "user_agent", "ip_address", "channel",
                  "session_id", "section", "outcome"]


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    data, as_of, out = pathlib.Path(sys.argv[1]), sys.argv[2], pathlib.Path(sys.argv[3])
    here = pathlib.Path(__file__).resolve().parent

    def csv(name):
        plain = data / name
        return plain if plain.exists() else data / (name + ".gz")

    params = {"audit": csv("audit.csv"), "entries": csv("entries.csv"), "appointments": csv("appointments.csv"),
              "proxies": csv("proxies.csv"), "codes": here.parent / "codelists" / "sensitive_codes.csv",
              "as_of": as_of, "out": out}
    text = (here / "catalogue.sql").read_text()
    for key, value in params.items():
        text = text.replace("{" + key + "}", str(value))
    out.mkdir(parents=True, exist_ok=True)
    load, query = text.split("COPY (", 1)
    con = duckdb.connect()
    con.execute("SET threads TO 2")
    con.execute(load)
    have = {row[0] for row in con.execute("DESCRIBE audit").fetchall()}
    for column in OPTIONAL_AUDIT:
        if column not in have:
            con.execute(f"ALTER TABLE audit ADD COLUMN {column} VARCHAR")
    if "proxy_nhs_number" not in {row[0] for row in con.execute("DESCRIBE proxies").fetchall()}:
        con.execute("ALTER TABLE proxies ADD COLUMN proxy_nhs_number VARCHAR")
    con.execute("COPY (" + query)


if __name__ == "__main__":
    main()
