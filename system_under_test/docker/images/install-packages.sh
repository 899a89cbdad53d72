#!/bin/sh
# Install the Debian packages named in packages.txt (beside this script) that the image lacks.
# The builder puts beside it the .debs of exactly those packages, downloaded on the host
# for what the parent image lacks: they are installed with no network. Without .debs
# (FROM a pulled debian:bookworm-slim), apt fetches the packages from the network.
set -eu
here=$(dirname "$0")
missing=""
for package in $(cat "$here/packages.txt"); do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed"; then
        missing="$missing $package"
    fi
done
if [ -n "$missing" ]; then
    if ls "$here"/*.deb >/dev/null 2>&1; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$here"/*.deb
    else
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing
    fi
fi
rm -f "$here"/*.deb
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/*.deb
# Packages such as ssl-cert make a snakeoil key at install time: no image keeps one.
rm -f /etc/ssl/private/ssl-cert-snakeoil.key /etc/ssl/certs/ssl-cert-snakeoil.pem
# Every part runs as the same numeric user, because p11-kit server checks the
# peer's uid/gid and the bind-mounted files must be readable across containers.
grep -q '^votriz:' /etc/group || echo 'votriz:x:10001:' >> /etc/group
grep -q '^votriz:' /etc/passwd || echo 'votriz:x:10001:10001:votriz:/nonexistent:/usr/sbin/nologin' >> /etc/passwd
