-- title: Flagged patients by run
-- question: Which patients were flagged (high or medium) in each detection run, with their score and rules?
SELECT run_date, nhs_number, risk_level, risk_score, rules
FROM flagged_patients
ORDER BY run_date DESC, risk_score DESC, nhs_number
