#!/bin/sh
# Create the cluster on first start (its system identifier and authentication nonce its own),
# then run the postmaster in the foreground.
set -eu
bin=/usr/lib/postgresql/15/bin
pgdata=/var/lib/votriz/pgdata
if [ ! -s "$pgdata/PG_VERSION" ]; then
    "$bin/initdb" -D "$pgdata" -U postgres -E UTF8 --no-locale \
        --auth-local=trust --auth-host=scram-sha-256 --no-sync >/dev/null
fi
exec "$bin/postgres" -D "$pgdata" -c listen_addresses='*' -c port=5432 \
    -c unix_socket_directories=/var/run/votriz-pg -c unix_socket_permissions=0700 \
    -c hba_file=/etc/votriz/pg_hba.conf -c password_encryption=scram-sha-256 \
    -c shared_buffers=16MB -c max_connections=40 -c log_line_prefix='%m [%p] %q%u@%d '
