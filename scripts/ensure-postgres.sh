#!/usr/bin/env bash
# Installs the PostgreSQL server (Debian package postgresql) when its binaries are missing.
# The tests start their own throwaway server from these binaries; nothing is started here.
set -u
if command -v pg_ctl >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing PostgreSQL (apt-get install postgresql)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null \
    || echo "warning: could not install postgresql; its tests will be skipped" >&2
else
  echo "note: no PostgreSQL server binaries and no root apt-get; the Postgres tests will be skipped" >&2
fi
exit 0
