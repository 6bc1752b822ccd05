-- title: Views soon after a sensitive entry
-- question: Which record views happened within N hours after a sensitive entry became visible online, from which device?
-- param: hours = 48  (how soon after the entry became visible)
SELECT s.nhs_number, s.entry_id, s.category, s.visible_from, a.occurred_at AS viewed_at, a.device_id, a.section
FROM sensitive_entries s
JOIN audit a ON a.nhs_number = s.nhs_number
WHERE a.action IN ('view', 'download')
  AND a.occurred_at >= s.visible_from
  AND a.occurred_at <= s.visible_from + INTERVAL '${hours} hours'
ORDER BY s.nhs_number, s.visible_from, a.occurred_at, a.event_id
