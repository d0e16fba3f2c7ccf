-- Which worker made each attempt: the claim owner, "<host>:<pid>:<random>"
-- for a daemon's live delivery, "replay:<id>@<instance>" for a replay runner.
-- Empty for attempts recorded before this migration.
ALTER TABLE delivery_attempts ADD COLUMN worker text NOT NULL DEFAULT '';
