-- title: Quarantine by reason and file
-- question: Which input rows were quarantined, from which files and columns, and why?
SELECT kind, source_file, "column", reason, COUNT(*) AS rows, MIN(line) AS first_line
FROM quarantine
GROUP BY kind, source_file, "column", reason
ORDER BY rows DESC, kind, source_file, reason
