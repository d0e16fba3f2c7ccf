-- What the downstream answered about the record it holds for an event: the
-- version and update time it reported at delivery (from the create call's
-- answer, or the lookup that found the record). A later change downstream
-- shows as another version or a later time, told apart from replayd's own
-- write. NULL when the downstream reported neither. No default: adding the
-- columns writes no rows.
ALTER TABLE events
    ADD COLUMN target_version    text,
    ADD COLUMN target_updated_at timestamptz;
