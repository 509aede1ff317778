#!/usr/bin/env bash
# Start a local PostgreSQL server for the store tests and print the URL to use.
# Installs the server with apt-get when the machine lacks it.
#
# The server outlives this script. Anything that may start it (apt-get's postinst included)
# runs with stdin, stdout and stderr on /dev/null or a log file and fd 3 closed: a daemon that
# inherits the caller's pipe keeps it open, and the caller's $(...) then waits for EOF forever.
set -euo pipefail
# Only the URL goes to stdout (kept on fd 3); everything the tools say goes to stderr.
exec 3>&1 1>&2
log=$(mktemp -t seqrun-postgres.XXXXXX)
trap 'rm -f "$log"' EXIT
quiet() { "$@" </dev/null >>"$log" 2>&1 3>&- || { cat "$log" >&2; return 1; }; }

# The client alone (psql) also lives under /usr/lib/postgresql: look for the server binary.
if ! command -v pg_ctlcluster >/dev/null 2>&1 || ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  quiet apt-get update -qq
  quiet apt-get install -y -qq postgresql
fi
ver=$(basename "$(dirname "$(dirname "$(ls -d /usr/lib/postgresql/*/bin/postgres | sort -V | tail -1)")")")
clusters=$(pg_lsclusters -h </dev/null 3>&-)  # read whole: grep -q would close the pipe early
if ! grep -q "^$ver main" <<<"$clusters"; then
  quiet pg_createcluster "$ver" main
fi
pg_ctlcluster "$ver" main status >/dev/null 2>&1 </dev/null 3>&- || quiet pg_ctlcluster "$ver" main start
for _ in $(seq 1 30); do
  su postgres -c "pg_isready -q -h 127.0.0.1" </dev/null 3>&- && break
  sleep 1
done
quiet su postgres -c "psql -q -c \"DO \\\$\\\$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname='seqrun') THEN CREATE ROLE seqrun LOGIN SUPERUSER PASSWORD 'seqrun'; END IF; END \\\$\\\$;\""
quiet su postgres -c "psql -q -tc \"SELECT 1 FROM pg_database WHERE datname='seqrun_test'\" | grep -q 1 || createdb -O seqrun seqrun_test"
echo "postgresql+psycopg://seqrun:seqrun@127.0.0.1:5432/seqrun_test" >&3
