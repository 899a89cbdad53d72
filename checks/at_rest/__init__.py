"""At rest: what the service stores, and how.

The page promises Fernet per row for the OAuth tokens of five platforms,
bcrypt 12 for passwords, bcrypt-hashed one-time MFA backup codes and recovery
tokens, PostgreSQL 15 on encrypted volumes, encrypted backups with a 30-day
retention and a monthly restore drill, "no sensitive data is stored in
plaintext", and a short list of what is NOT encrypted.

A canary account (``harness/probes/canary_account.py``) plants known secrets
through the API; the probes read what the auditor role can see in PostgreSQL
(``harness/probes/database.py``), Redis, the logs and the backups, and each
module here is one check: a pure judgement over those observations. Whole
columns are streamed through server-side cursors and judged cell by cell
(``harness/column_scans.py``): a garbage cell is a counted FAIL reason, never
a crash.
"""
