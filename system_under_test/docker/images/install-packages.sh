#!/bin/sh
# Install the Debian packages named in packages.txt that the base image lacks.
# A base built locally with mmdebstrap already holds all of them, so this does
# nothing and needs no network; a pulled debian:bookworm-slim gets them here.
set -eu
missing=""
for package in $(cat "$1"); do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed"; then
        missing="$missing $package"
    fi
done
if [ -n "$missing" ]; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing
    rm -rf /var/lib/apt/lists/*
fi
# Every part runs as the same numeric user, because p11-kit server checks the
# peer's uid/gid and the bind-mounted files must be readable across containers.
grep -q '^votriz:' /etc/group || echo 'votriz:x:10001:' >> /etc/group
grep -q '^votriz:' /etc/passwd || echo 'votriz:x:10001:10001:votriz:/nonexistent:/usr/sbin/nologin' >> /etc/passwd
