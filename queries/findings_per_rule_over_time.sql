-- title: Findings per rule over time
-- question: How many findings did each rule raise in each detection run, and how strong were they?
SELECT run_date, rule_id, COUNT(*) AS findings, COUNT(DISTINCT nhs_number) AS patients, MAX(score) AS max_score
FROM findings
GROUP BY run_date, rule_id
ORDER BY run_date, rule_id
