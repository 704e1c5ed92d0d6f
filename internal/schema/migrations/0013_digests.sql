-- placeholder: reserved slot, replaced by its owner (or removed before release)
SELECT 1;
