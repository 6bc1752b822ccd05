-- title: Devices per patient
-- question: Which patients' records have been opened from the most distinct devices, and since when?
-- param: min_devices = 2  (list patients with at least this many devices)
SELECT nhs_number, COUNT(DISTINCT device_id) AS devices, COUNT(*) AS events, MIN(occurred_at) AS first_event, MAX(occurred_at) AS last_event
FROM audit
WHERE device_id IS NOT NULL
GROUP BY nhs_number
HAVING COUNT(DISTINCT device_id) >= ${min_devices}
ORDER BY devices DESC, nhs_number
