# Sourced by scripts/test and scripts/bench: starts a throwaway PostgreSQL cluster on
# loopback and stops it on exit. Sets SHOPMESH_PG_URL. `start_throwaway_postgres off` turns
# fsync off (the tests: the cluster is thrown away, durability is not what they check);
# the bench keeps Postgres' durable defaults, so its figures are what production pays.
start_throwaway_postgres() {
  local fsync=${1:-on} pgbin port as_pg=()
  pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  pgdir=$(mktemp -d /tmp/shopmesh-pg.XXXXXX)
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  if [ "$(id -u)" -eq 0 ]; then
    # initdb refuses to run as root: run the cluster as the postgres user the package made.
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
    chown postgres "$pgdir"
    as_pg=(runuser -u postgres --)
  fi
  pg_stop=("${as_pg[@]}" "$pgbin/pg_ctl" -D "$pgdir/data" -m immediate stop)
  trap 'stop_throwaway_postgres' EXIT
  "${as_pg[@]}" "$pgbin/initdb" -D "$pgdir/data" -U postgres --auth=trust -E UTF8 --no-sync >/dev/null
  "${as_pg[@]}" "$pgbin/pg_ctl" -D "$pgdir/data" -w -l "$pgdir/log" \
    -o "-p $port -k $pgdir -c listen_addresses=127.0.0.1 -c fsync=$fsync -c max_connections=400" start >/dev/null
  export SHOPMESH_PG_URL="postgres://postgres@127.0.0.1:$port/postgres"
}

stop_throwaway_postgres() {
  "${pg_stop[@]}" >/dev/null 2>&1 || true
  rm -rf "$pgdir"
}
