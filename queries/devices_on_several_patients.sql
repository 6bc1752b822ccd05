-- title: Devices seen on more than one patient's record
-- question: Which devices have opened the records of several patients, through how many accounts, and is any of it a formal proxy?
-- param: min_patients = 2  (list devices used on at least this many records)
SELECT device_id,
       COUNT(DISTINCT nhs_number) AS patients,
       COUNT(DISTINCT account_id) AS accounts,
       SUM(CASE WHEN actor_role = 'proxy' THEN 1 ELSE 0 END) AS proxy_events,
       COUNT(*) AS events,
       MIN(occurred_at) AS first_event,
       MAX(occurred_at) AS last_event
FROM audit
WHERE device_id IS NOT NULL
GROUP BY device_id
HAVING COUNT(DISTINCT nhs_number) >= ${min_patients}
ORDER BY patients DESC, device_id
