-- title: New devices this week
-- question: Which devices opened a patient's record for the first time in the last N days of data?
-- param: days = 7  (days back from the newest event)
WITH first_use AS (
    SELECT nhs_number, device_id, MIN(occurred_at) AS first_seen, COUNT(*) AS events
    FROM audit
    WHERE device_id IS NOT NULL
    GROUP BY nhs_number, device_id
),
latest AS (SELECT MAX(occurred_at) - INTERVAL '${days} days' AS since FROM audit)
SELECT f.nhs_number, f.device_id, f.first_seen, f.events
FROM first_use f CROSS JOIN latest
WHERE f.first_seen > latest.since
ORDER BY f.first_seen, f.nhs_number, f.device_id
