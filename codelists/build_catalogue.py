#!/usr/bin/env python3
"""Builds codelists/sensitive_codes.csv (code,term,category,source) from the public lists in ../shared/codelists/
and in codelists/sources/.

Run from the repository root:  python3 codelists/build_catalogue.py ../shared/codelists
The output is committed; the binary embeds it. PROVENANCE.md beside this file says where each list comes from,
its licence, and how its codes were mapped to the contract's categories.
"""
import csv
import re
import sys
from pathlib import Path

# (file under the shared folder, category, source label written to the catalogue)
OPENSAFELY = [
    ("opensafely/user-S_Walter-domestic-violence-abuse-complexity-factor.csv", "domestic_abuse",
     "opencodelists:user/S_Walter/domestic-violence-abuse-complexity-factor/3191bf97"),
    ("opensafely/user-S_Walter-child-safeguarding.csv", "safeguarding",
     "opencodelists:user/S_Walter/child-safeguarding/320336da"),
    ("opensafely/user-S_Walter-rcgp-child-safeguarding.csv", "safeguarding",
     "opencodelists:user/S_Walter/rcgp-child-safeguarding/3a120dbf"),
    ("opensafely/user-hjforbes-severe-mental-illness.csv", "mental_health",
     "opencodelists:user/hjforbes/severe-mental-illness/2dd5e1c0"),
    ("opensafely/user-hjforbes-depression-symptoms-and-diagnoses.csv", "mental_health",
     "opencodelists:user/hjforbes/depression-symptoms-and-diagnoses/499814eb"),
    ("opensafely/user-hjforbes-anxiety-symptoms-and-diagnoses.csv", "mental_health",
     "opencodelists:user/hjforbes/anxiety-symptoms-and-diagnoses/3088a1b6"),
    ("opensafely/user-hjforbes-diagnoses-eating-disorder.csv", "mental_health",
     "opencodelists:user/hjforbes/diagnoses-eating-disorder/62a78820"),
    ("opensafely/user-hjforbes-post-traumatic-stress-disorder.csv", "mental_health",
     "opencodelists:user/hjforbes/post-traumatic-stress-disorder/7e69bb4b"),
    ("opensafely/user-agleman-psych-emergencies-snomed.csv", "mental_health",
     "opencodelists:user/agleman/psych-emergencies-snomed/593b6ddc"),
    ("opensafely/ons-self-harm-intentional-and-undetermined-intent.csv", "self_harm",
     "opencodelists:ons/self-harm-intentional-and-undetermined-intent/74239017"),
    ("opensafely/user-agleman-violenceecds_snomed.csv", "injury",
     "opencodelists:user/agleman/violenceecds_snomed/07405c8e"),
    ("opensafely/user-S_Walter-alcohol-misuse-complexity-factor.csv", "substance_misuse",
     "opencodelists:user/S_Walter/alcohol-misuse-complexity-factor/02843e6c"),
    ("opensafely/user-S_Walter-drug-misuse-complexity-factor.csv", "substance_misuse",
     "opencodelists:user/S_Walter/drug-misuse-complexity-factor/2f3da4ea"),
]
# Lists kept inside this repository (codelists/sources/), with their licence beside them: (file, category, source
# label, a term filter or None). The HIV list carries one row about pregnancy complications, which the filter drops.
UOM = "sources/uom_pregnancy_tx_pathways/"
UOM_AT = "@f14231ab"
LOCAL = [
    (UOM + "user-VickiPalin-pregnancy_top_snomed.csv", "pregnancy",
     "opencodelists:user/VickiPalin/pregnancy_top_snomed/7cdd6afb" + UOM_AT, None),
    (UOM + "user-VickiPalin-pregnancy_top-probable_snomed.csv", "pregnancy",
     "opencodelists:user/VickiPalin/pregnancy_top-probable_snomed/3deab1f4" + UOM_AT, None),
    (UOM + "user-VickiPalin-pregnancy_miscarriage_snomed.csv", "pregnancy",
     "opencodelists:user/VickiPalin/pregnancy_miscarriage_snomed/6d56d868" + UOM_AT, None),
    (UOM + "user-VickiPalin-pregnancy_ectopic_snomed.csv", "pregnancy",
     "opencodelists:user/VickiPalin/pregnancy_ectopic_snomed/16382619" + UOM_AT, None),
    (UOM + "user-VickiPalin-pregnancy_molar_snomed.csv", "pregnancy",
     "opencodelists:user/VickiPalin/pregnancy_molar_snomed/54476533" + UOM_AT, None),
    (UOM + "user-VickiPalin-pregnancy_blighted_ovum_snomed.csv", "pregnancy",
     "opencodelists:user/VickiPalin/pregnancy_blighted_ovum_snomed/48570c83" + UOM_AT, None),
    (UOM + "user-VickiPalin-pregnancy_antenatal_snomed.csv", "pregnancy",
     "opencodelists:user/VickiPalin/pregnancy_antenatal_snomed/61667fb8" + UOM_AT, None),
    (UOM + "user-yayang-charlson10_hiv.csv", "sexual_health",
     "opencodelists:user/yayang/charlson10_hiv/17e13cc7" + UOM_AT,
     re.compile(r"HIV|AIDS|immunodeficiency|immune deficiency", re.I)),
]
ACES = "acesinehrs/IPV_2025ACEsinEHRs.csv"
ACES_SOURCE = "acesinehrs:IPV_2025ACEsinEHRs@2b5eed23"

VERHOEFF_D = [[0,1,2,3,4,5,6,7,8,9],[1,2,3,4,0,6,7,8,9,5],[2,3,4,0,1,7,8,9,5,6],[3,4,0,1,2,8,9,5,6,7],
              [4,0,1,2,3,9,5,6,7,8],[5,9,8,7,6,0,4,3,2,1],[6,5,9,8,7,1,0,4,3,2],[7,6,5,9,8,2,1,0,4,3],
              [8,7,6,5,9,3,2,1,0,4],[9,8,7,6,5,4,3,2,1,0]]
VERHOEFF_P = [[0,1,2,3,4,5,6,7,8,9],[1,5,7,6,2,8,3,0,9,4],[5,8,0,3,7,9,6,1,4,2],[8,9,1,6,0,4,3,5,2,7],
              [9,4,5,3,1,2,6,8,7,0],[4,2,8,6,5,7,3,9,0,1],[2,7,9,3,8,0,6,4,1,5],[7,0,4,6,9,1,3,2,5,8]]


def valid_sctid(code):
    if not code.isdigit() or not 6 <= len(code) <= 18 or code[0] == "0":
        return False
    if code[-3:-1] not in {"00", "01", "02", "03", "04", "05", "10", "11", "12", "13", "14", "15"}:
        return False
    c = 0
    for i, d in enumerate(reversed(code)):
        c = VERHOEFF_D[c][VERHOEFF_P[i % 8][int(d)]]
    return c == 0


def main(shared):
    rows, dropped = {}, []

    def add(code, term, category, source):
        code, term = code.strip(), " ".join(term.split())
        if not valid_sctid(code):
            dropped.append((source, code))
            return
        rows.setdefault((code, category), (term, source))

    for rel, category, source in OPENSAFELY:
        with open(shared / rel, newline="", encoding="utf-8") as f:
            for r in csv.DictReader(f):
                add(r["code"], r["term"], category, source)
    here = Path(__file__).parent
    for rel, category, source, keep in LOCAL:
        with open(here / rel, newline="", encoding="utf-8") as f:
            for r in csv.DictReader(f):
                if keep is None or keep.search(r["term"]):
                    add(r["code"], r["term"], category, source)
                else:
                    dropped.append((source, r["code"]))
    with open(shared / ACES, newline="", encoding="utf-8", errors="replace") as f:
        for r in csv.DictReader(f):
            if not r["SnomedCTConceptId"]:
                continue  # ICD-10 and CPRD medcodes: not SNOMED CT
            # Assault indicators (the ASSLT algorithm) are injuries; the rest are domestic abuse indicators.
            category = "injury" if r["domain"] == "IPV_ASSLT_ALGO" else "domestic_abuse"
            add(r["SnomedCTConceptId"], r["coding_term"], category, ACES_SOURCE)
    out = Path(__file__).with_name("sensitive_codes.csv")
    with open(out, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["code", "term", "category", "source"])
        for (code, category), (term, source) in sorted(rows.items(), key=lambda kv: (kv[0][1], int(kv[0][0]))):
            w.writerow([code, term, category, source])
    print(f"{len(rows)} codes written to {out}; {len(dropped)} dropped (not valid SNOMED CT ids, or off-topic)")
    for source, code in dropped:
        print(f"  dropped {code} from {source}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/codelists"))
