-- Placeholder for migration 0017, reserved for another branch of issue #15 (alert labels): delete
-- this file when that branch's 0017 is merged.
SELECT 1;
