-- The rule catalogue as a first analyst would write it in plain SQL (DuckDB): one CTE per rule of
-- ../shared/spec/data-contract.md, 30 points for each rule a patient trips, no baselines beyond one query's worth.
-- It is the peer accesswatch's ingest + detect is timed against in benches/bench.sh ("practice" rows), and a
-- reference ranking: it writes a patients.csv that `accesswatch evaluate` reads.
--
-- Parameters, substituted by benches/bench.sh before it runs: {audit}, {entries}, {appointments}, {proxies} (CSV
-- paths), {codes} (the sensitive code list, codelists/sensitive_codes.csv), {as_of} (the run's last day, a date) and
-- {out} (where patients.csv goes). Times are read as UTC and hours taken in Europe/London.
SET TimeZone = 'Europe/London';
-- A time as the contract allows it: with Z, with an offset, or bare (UTC).
CREATE MACRO utc(t) AS CAST(CASE WHEN t LIKE '%Z' OR regexp_matches(t, '[+-][0-9][0-9]:?[0-9][0-9]$') THEN t
                                 ELSE t || 'Z' END AS TIMESTAMPTZ);

CREATE TABLE audit AS SELECT * FROM read_csv('{audit}', header = true, all_varchar = true);
CREATE TABLE entries AS SELECT * FROM read_csv('{entries}', header = true, all_varchar = true);
CREATE TABLE appointments AS SELECT * FROM read_csv('{appointments}', header = true, all_varchar = true);
CREATE TABLE proxies AS SELECT * FROM read_csv('{proxies}', header = true, all_varchar = true);
CREATE TABLE codes AS SELECT code FROM read_csv('{codes}', header = true, all_varchar = true);

COPY (
WITH ev AS (
    SELECT nhs_number, account_id, coalesce(device_id, user_agent, '?') AS device, ip_address, action, section,
           utc(occurred_at) AS ts
    FROM audit
    WHERE coalesce(outcome, 'success') = 'success'
      AND utc(occurred_at) < CAST('{as_of}' AS DATE) + INTERVAL 1 DAY
      AND utc(occurred_at) >= CAST('{as_of}' AS DATE) - INTERVAL 89 DAY
),
views AS (SELECT * FROM ev WHERE action IN ('view', 'download')),
-- The patient's own device: the one with the most events on their record.
main_device AS (
    SELECT nhs_number, arg_max(device, n) AS device
    FROM (SELECT nhs_number, device, count(*) AS n FROM ev GROUP BY ALL)
    GROUP BY nhs_number
),
sensitive AS (
    SELECT e.nhs_number, utc(e.recorded_at) AS at
    FROM entries e JOIN codes c ON e.code = c.code
    WHERE coalesce(e.visible_online, 'true') = 'true'
),
-- 1. A view within 48 hours of a sensitive entry, from another device or between midnight and 05:00.
access_after_sensitive_entry AS (
    SELECT DISTINCT v.nhs_number
    FROM views v JOIN sensitive s ON v.nhs_number = s.nhs_number
    JOIN main_device m ON m.nhs_number = v.nhs_number
    WHERE v.ts BETWEEN s.at AND s.at + INTERVAL 48 HOUR
      AND (v.device <> m.device OR hour(v.ts) < 5)
),
-- 2. A second device on two days or more while the main device was still in use after it appeared.
unfamiliar_device AS (
    SELECT DISTINCT d.nhs_number
    FROM (SELECT nhs_number, device, min(ts) AS first, count(DISTINCT CAST(ts AS DATE)) AS days
          FROM views GROUP BY ALL) d
    JOIN main_device m ON m.nhs_number = d.nhs_number AND d.device <> m.device
    WHERE d.days >= 2
      AND EXISTS (SELECT 1 FROM ev e WHERE e.nhs_number = d.nhs_number AND e.device = m.device AND e.ts > d.first)
),
-- 3. A device on two patients' records or more with no formal proxy link between them.
shared_device AS (
    SELECT DISTINCT a.nhs_number
    FROM (SELECT DISTINCT nhs_number, device FROM ev WHERE device <> '?') a
    JOIN (SELECT DISTINCT nhs_number, device FROM ev WHERE device <> '?') b
      ON a.device = b.device AND a.nhs_number <> b.nhs_number
    WHERE NOT EXISTS (SELECT 1 FROM proxies p
                      WHERE (p.nhs_number = a.nhs_number AND p.proxy_nhs_number = b.nhs_number)
                         OR (p.nhs_number = b.nhs_number AND p.proxy_nhs_number = a.nhs_number))
),
-- 4. Views on three days or more at local hours that hold under 2% of the patient's events.
hour_share AS (
    SELECT nhs_number, h, n / sum(n) OVER (PARTITION BY nhs_number) AS share
    FROM (SELECT nhs_number, hour(ts) AS h, count(*) AS n FROM ev GROUP BY nhs_number, hour(ts))
),
unusual_hour AS (
    SELECT v.nhs_number
    FROM views v JOIN hour_share s ON s.nhs_number = v.nhs_number AND s.h = hour(v.ts)
    WHERE s.share < 0.02
    GROUP BY v.nhs_number
    HAVING count(DISTINCT CAST(v.ts AS DATE)) >= 3
),
-- 5. A view while the patient was at a face-to-face appointment.
access_during_appointment AS (
    SELECT DISTINCT v.nhs_number
    FROM views v JOIN appointments a ON a.nhs_number = v.nhs_number
    WHERE a.mode = 'face_to_face' AND coalesce(a.status, 'attended') = 'attended'
      AND v.ts BETWEEN utc(a.starts_at) AND utc(a.ends_at)
),
-- 6. One account on two devices within five minutes: some event follows one from another device that soon (a window
-- over the account's events in time order, rather than a self-join, which took two thirds of the script's time).
concurrent_sessions AS (
    SELECT DISTINCT nhs_number
    FROM (SELECT nhs_number, device, ts,
                 lag(device) OVER w AS prev_device, lag(ts) OVER w AS prev_ts
          FROM ev WINDOW w AS (PARTITION BY account_id, nhs_number ORDER BY ts))
    WHERE prev_device <> device AND ts - prev_ts <= INTERVAL 5 MINUTE
),
-- 7. After a 104 code with no later 106, views from a device other than the main one.
restricted AS (
    SELECT nhs_number, max(utc(recorded_at)) AS at
    FROM entries WHERE code = '1364731000000104' GROUP BY nhs_number
),
lifted AS (
    SELECT nhs_number, max(utc(recorded_at)) AS at
    FROM entries WHERE code = '1364751000000106' GROUP BY nhs_number
),
access_despite_restriction AS (
    SELECT DISTINCT v.nhs_number
    FROM views v JOIN restricted r ON r.nhs_number = v.nhs_number
    JOIN main_device m ON m.nhs_number = v.nhs_number
    LEFT JOIN lifted l ON l.nhs_number = v.nhs_number AND l.at > r.at
    WHERE l.at IS NULL AND v.ts > r.at AND v.device <> m.device
),
-- 8. A password or contact change, then a device first seen within a day.
account_change_then_new_device AS (
    SELECT DISTINCT c.nhs_number
    FROM ev c
    JOIN (SELECT nhs_number, device, min(ts) AS first FROM ev GROUP BY ALL) d ON d.nhs_number = c.nhs_number
    WHERE c.action IN ('change_password', 'change_contact_details')
      AND d.first > c.ts AND d.first <= c.ts + INTERVAL 1 DAY
),
-- 9. Views per day in the last 14 days at three times the rate of the 76 before, and at least ten.
monitoring_cadence AS (
    SELECT nhs_number
    FROM views
    GROUP BY nhs_number
    HAVING count(*) FILTER (WHERE ts >= CAST('{as_of}' AS DATE) - INTERVAL 13 DAY) >= 10
       AND count(*) FILTER (WHERE ts >= CAST('{as_of}' AS DATE) - INTERVAL 13 DAY) / 14.0
           > 3 * (count(*) FILTER (WHERE ts < CAST('{as_of}' AS DATE) - INTERVAL 13 DAY) + 1) / 76.0
),
fired AS (
    SELECT nhs_number, 'access_after_sensitive_entry' AS rule FROM access_after_sensitive_entry
    UNION ALL SELECT nhs_number, 'unfamiliar_device' FROM unfamiliar_device
    UNION ALL SELECT nhs_number, 'shared_device' FROM shared_device
    UNION ALL SELECT nhs_number, 'unusual_hour' FROM unusual_hour
    UNION ALL SELECT nhs_number, 'access_during_appointment' FROM access_during_appointment
    UNION ALL SELECT nhs_number, 'concurrent_sessions' FROM concurrent_sessions
    UNION ALL SELECT nhs_number, 'access_despite_restriction' FROM access_despite_restriction
    UNION ALL SELECT nhs_number, 'account_change_then_new_device' FROM account_change_then_new_device
    UNION ALL SELECT nhs_number, 'monitoring_cadence' FROM monitoring_cadence
)
SELECT nhs_number,
       30 * count(*) AS risk_score,
       CASE WHEN count(*) >= 3 THEN 'high' WHEN count(*) >= 2 THEN 'medium' ELSE 'low' END AS risk_level,
       string_agg(rule, ';' ORDER BY rule) AS rules
FROM fired
GROUP BY nhs_number
ORDER BY risk_score DESC, nhs_number
) TO '{out}/patients.csv' (HEADER, DELIMITER ',');
