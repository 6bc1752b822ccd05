-- title: Access volume by day and channel
-- question: How many record-access events happened on each day of the last N days (practice time), by channel and action?
-- param: days = 28  (days back from the newest event)
WITH latest AS (SELECT MAX(occurred_at) - INTERVAL '${days} days' AS since FROM audit)
SELECT CAST(a.occurred_local AS DATE) AS day, a.channel, a.action, COUNT(*) AS events
FROM audit a CROSS JOIN latest
WHERE a.occurred_at > latest.since
GROUP BY 1, 2, 3
ORDER BY 1, 2, 3
