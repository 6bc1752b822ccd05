-- title: One patient's access timeline
-- question: Everything the online accounts did to one patient's record, in time order, with device and address.
-- param: nhs_number = 9990000000  (the patient's 10-digit NHS number)
SELECT occurred_at, occurred_local, action, section, outcome, account_id, actor_role, device_id, ip_address, channel, session_id
FROM audit
WHERE nhs_number = '${nhs_number}'
ORDER BY occurred_at, event_id
