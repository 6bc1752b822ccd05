-- title: Access while a 104 restriction is in force
-- question: Which records were viewed while a 104 code restricted online access (before any 106 lifted it), and from which devices?
SELECT r.nhs_number, r.restricted_from, r.restricted_until, a.device_id, COUNT(*) AS views, MIN(a.occurred_at) AS first_view, MAX(a.occurred_at) AS last_view
FROM restrictions r
JOIN audit a ON a.nhs_number = r.nhs_number
WHERE a.action IN ('view', 'download')
  AND a.occurred_at >= r.restricted_from
  AND (r.restricted_until IS NULL OR a.occurred_at < r.restricted_until)
GROUP BY r.nhs_number, r.restricted_from, r.restricted_until, a.device_id
ORDER BY r.nhs_number, r.restricted_from, a.device_id
