-- title: Sensitive entries by category
-- question: How many sensitive entries are visible online in each category, found by code or by keyword?
SELECT category, matched_by, COUNT(*) AS entries, COUNT(DISTINCT nhs_number) AS patients
FROM sensitive_entries
GROUP BY category, matched_by
ORDER BY category, matched_by
