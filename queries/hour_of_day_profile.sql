-- title: Hour-of-day profile of the practice
-- question: At what local hours do patients use online record access, and how many different patients at each hour?
SELECT EXTRACT(HOUR FROM occurred_local) AS hour, COUNT(*) AS events, COUNT(DISTINCT nhs_number) AS patients
FROM audit
GROUP BY 1
ORDER BY 1
