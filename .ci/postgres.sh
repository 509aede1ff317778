#!/usr/bin/env bash
# Start a local PostgreSQL server for the store tests and print the URL to use.
# Installs the server with apt-get when the machine lacks it.
set -euo pipefail
# Only the URL goes to stdout; everything the tools say goes to stderr.
exec 3>&1 1>&2
if ! command -v pg_lsclusters >/dev/null 2>&1 || [ -z "$(ls /usr/lib/postgresql 2>/dev/null)" ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq postgresql >/dev/null
fi
ver=$(ls /usr/lib/postgresql | sort -n | tail -1)
if ! pg_lsclusters -h | grep -q "^$ver main"; then
  pg_createcluster "$ver" main >/dev/null
fi
pg_ctlcluster "$ver" main start 2>/dev/null || true
for _ in $(seq 1 30); do
  su postgres -c "pg_isready -q -h 127.0.0.1" && break
  sleep 1
done
su postgres -c "psql -q -c \"DO \\\$\\\$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname='seqrun') THEN CREATE ROLE seqrun LOGIN SUPERUSER PASSWORD 'seqrun'; END IF; END \\\$\\\$;\"" >/dev/null
su postgres -c "psql -q -tc \"SELECT 1 FROM pg_database WHERE datname='seqrun_test'\" | grep -q 1 || createdb -O seqrun seqrun_test"
echo "postgresql+psycopg://seqrun:seqrun@127.0.0.1:5432/seqrun_test" >&3
