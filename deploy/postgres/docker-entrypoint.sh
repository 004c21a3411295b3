#!/usr/bin/env bash
# The official postgres image's start-up, reduced to what a compose file relies on. Started as
# root, it gives PGDATA to the postgres user and runs itself again as that user. On the first
# start (no PG_VERSION in PGDATA) it runs initdb with POSTGRES_USER and POSTGRES_PASSWORD, lets
# every address in with that password, creates POSTGRES_DB and runs /docker-entrypoint-initdb.d;
# the server it uses for that listens on no TCP port, so nothing connects before it is done.
# Then it replaces itself with the server.
set -Eeuo pipefail

initialize() {
  local user=${POSTGRES_USER:-postgres}
  local database=${POSTGRES_DB:-$user}
  local auth=${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}
  local initdb_options=(--username="$user" --encoding=UTF8 --locale=C.UTF-8
    --auth-local=trust --auth-host="$auth")
  if [[ -n ${POSTGRES_PASSWORD:-} ]]; then
    initdb_options+=(--pwfile=/dev/stdin)
  elif [[ $auth != trust ]]; then
    echo "error: the database is not initialized and POSTGRES_PASSWORD is not set;" \
      "set it, or POSTGRES_HOST_AUTH_METHOD=trust to let anyone in without one" >&2
    exit 1
  fi
  # POSTGRES_INITDB_ARGS is a list of options, to be split into words.
  # shellcheck disable=SC2206
  initdb_options+=(${POSTGRES_INITDB_ARGS:-})
  initdb "${initdb_options[@]}" <<<"${POSTGRES_PASSWORD:-}"
  printf "\nlisten_addresses = '*'\n" >>"$PGDATA/postgresql.conf"
  printf '\nhost all all all %s\n' "$auth" >>"$PGDATA/pg_hba.conf"

  pg_ctl --pgdata="$PGDATA" --wait --silent --options="-c listen_addresses=''" start
  export PGUSER=$user PGDATABASE=postgres
  if [[ $database != postgres ]]; then
    psql --no-psqlrc --quiet -v ON_ERROR_STOP=1 --set=database="$database" \
      <<<'CREATE DATABASE :"database";'
  fi
  export PGDATABASE=$database
  local script
  for script in /docker-entrypoint-initdb.d/*; do
    case $script in
      *.sh) echo "running $script"; bash "$script" ;;
      *.sql) echo "running $script"; psql --no-psqlrc --quiet -v ON_ERROR_STOP=1 -f "$script" ;;
      *) [[ -e $script ]] && echo "ignoring $script" ;;
    esac
  done
  unset PGUSER PGDATABASE
  pg_ctl --pgdata="$PGDATA" --wait --silent --mode=fast stop
  echo "PostgreSQL init process complete; ready for start up."
}

# Options first (`docker run IMAGE -c fsync=off`) are the server's, as with the official image.
if [[ ${1:-} == -* ]]; then
  set -- postgres "$@"
fi

if [[ ${1:-} == postgres && $(id -u) == 0 ]]; then
  mkdir -p "$PGDATA"
  find "$PGDATA" \! -user postgres -exec chown postgres:postgres '{}' +
  chmod 0700 "$PGDATA"
  exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
fi

if [[ ${1:-} == postgres && ! -s $PGDATA/PG_VERSION ]]; then
  initialize
fi
exec "$@"
