#!/bin/bash
# The official image's contract: on an empty data folder, initdb with POSTGRES_PASSWORD, run
# /docker-entrypoint-initdb.d/*.sh against a local server, then serve on every address as `postgres`.
set -euo pipefail
mkdir -p "$PGDATA" /run/postgresql
chown -R postgres:postgres "$PGDATA" /run/postgresql
chmod 700 "$PGDATA"
as_pg() { runuser -u postgres -- env PATH="$PATH" PGDATA="$PGDATA" "$@"; }
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  pwfile=$(mktemp) && printf '%s' "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is not set}" > "$pwfile"
  chown postgres "$pwfile"
  as_pg initdb --encoding=UTF8 --locale=C.UTF-8 --username=postgres --pwfile="$pwfile" --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  rm -f "$pwfile"
  echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
  as_pg pg_ctl -o "-c listen_addresses=''" -w start >/dev/null
  for f in /docker-entrypoint-initdb.d/*.sh; do
    [ -e "$f" ] && runuser -u postgres -- env PATH="$PATH" bash "$f"
  done
  as_pg pg_ctl -m fast -w stop >/dev/null
fi
exec runuser -u postgres -- env PATH="$PATH" postgres -D "$PGDATA" -c listen_addresses='*'
