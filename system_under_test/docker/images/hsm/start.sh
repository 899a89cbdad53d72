#!/bin/sh
# Two p11-kit servers in front of the one SoftHSM token.
# - /run/p11/sock, in a volume the API mounts: the server refuses any peer
#   whose uid/gid is not the service user's (10001).
# - /run/p11-audit/sock, bind-mounted from the host only (STATE/run/p11-audit,
#   mode 0700): no uid check, so the auditor on the host (root) can list the
#   token; no other container mounts it.
set -eu
TOKEN="pkcs11:token=${VOTRIZ_TOKEN_LABEL:-votriz}"
PROVIDER=/usr/lib/softhsm/libsofthsm2.so
p11-kit server -f --provider "$PROVIDER" -n /run/p11-audit/sock "$TOKEN" &
exec p11-kit server -f -u votriz -g votriz --provider "$PROVIDER" -n /run/p11/sock "$TOKEN"
