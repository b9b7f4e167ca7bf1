-- A rotated refresh token honoured within its client's grace period (a concurrent refresh) is
-- honoured once: the next presentation is a reuse and revokes the family.
ALTER TABLE refresh_tokens ADD COLUMN grace_used INTEGER NOT NULL DEFAULT 0 CHECK (grace_used IN (0, 1));
