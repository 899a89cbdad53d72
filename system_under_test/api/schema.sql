-- The reference service's schema (PostgreSQL 15, database votriz, owner votriz_app).
-- Applied by `python -m system_under_test.ops migrate`; every statement is idempotent.

CREATE TABLE IF NOT EXISTS users (
    id              bigserial PRIMARY KEY,
    email_enc       text NOT NULL,
    email_index     text NOT NULL UNIQUE,
    password_hash   text NOT NULL,
    totp_secret_enc text NULL,
    mfa_enabled     boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS mfa_backup_codes (
    id         bigserial PRIMARY KEY,
    user_id    bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    code_hash  text NOT NULL,
    used_at    timestamptz NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS mfa_backup_codes_user ON mfa_backup_codes(user_id);

CREATE TABLE IF NOT EXISTS recovery_tokens (
    id         bigserial PRIMARY KEY,
    user_id    bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    token_hash text NOT NULL,
    expires_at timestamptz NOT NULL,
    used_at    timestamptz NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS recovery_tokens_user ON recovery_tokens(user_id);

CREATE TABLE IF NOT EXISTS brands (
    id         bigserial PRIMARY KEY,
    owner_id   bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name       text NOT NULL,
    industry   text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS brands_owner ON brands(owner_id);

CREATE TABLE IF NOT EXISTS channels (
    id                bigserial PRIMARY KEY,
    brand_id          bigint NOT NULL REFERENCES brands(id) ON DELETE CASCADE,
    platform          text NOT NULL
        CHECK (platform IN ('instagram', 'linkedin', 'twitter', 'tiktok', 'youtube')),
    external_account  text NULL,
    access_token_enc  text NOT NULL,
    refresh_token_enc text NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS channels_brand ON channels(brand_id);

CREATE TABLE IF NOT EXISTS analytics_counters (
    brand_id        bigint PRIMARY KEY REFERENCES brands(id) ON DELETE CASCADE,
    post_count      bigint NOT NULL DEFAULT 0,
    engagement_rate numeric NOT NULL DEFAULT 0
);

CREATE TABLE IF NOT EXISTS captions (
    id          bigserial PRIMARY KEY,
    brand_id    bigint NOT NULL REFERENCES brands(id) ON DELETE CASCADE,
    prompt_enc  text NOT NULL,
    caption_enc text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS captions_brand ON captions(brand_id);

-- The auditor's read-only role sees every table, present and future, when the
-- backend has created it.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'votriz_auditor') THEN
        GRANT USAGE ON SCHEMA public TO votriz_auditor;
        GRANT SELECT ON ALL TABLES IN SCHEMA public TO votriz_auditor;
        ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO votriz_auditor;
    END IF;
END
$$;
