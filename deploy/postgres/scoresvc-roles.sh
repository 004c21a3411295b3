#!/usr/bin/env bash
# scoresvc's two PostgreSQL roles, so that the service never connects as the superuser:
#
#   scoresvc_owner  owns the schema and every table in it, and runs the migrations (the migrate
#                   service of docker-compose.cluster.yml). Password: POSTGRES_OWNER_PASSWORD.
#   scoresvc_app    what the replicas connect as: SELECT, INSERT, UPDATE and DELETE on the tables
#                   and USAGE on their sequences, nothing else (no DDL, no TRUNCATE, no temporary
#                   tables). Tables a later migration creates get the same grants, by the owner's
#                   default privileges. Password: POSTGRES_APP_PASSWORD.
#
# Neither is a superuser, and the superuser (POSTGRES_USER) may no longer log in over the
# network at all: only on the Unix socket, inside the container (docker compose exec postgres
# psql -U postgres).
#
# docker-compose.cluster.yml mounts this file in /docker-entrypoint-initdb.d, whose scripts the
# image (the official one or deploy/postgres) runs once, when it initializes a new database, as
# the superuser, with the server listening on its Unix socket only. It can be run again, and
# by hand on a database made before these roles existed: it takes the objects of the public
# schema over for scoresvc_owner and grants what scoresvc_app needs on them (see docs/hardening.md, "The cluster").
set -Eeuo pipefail

superuser=${POSTGRES_USER:-postgres}
database=${POSTGRES_DB:-$superuser}
: "${POSTGRES_OWNER_PASSWORD:?set POSTGRES_OWNER_PASSWORD, the password of scoresvc_owner}"
: "${POSTGRES_APP_PASSWORD:?set POSTGRES_APP_PASSWORD, the password of scoresvc_app}"

# The passwords go from the environment into psql variables (\getenv), so that no command line
# (ps, /proc) shows them.
psql --no-psqlrc --quiet -v ON_ERROR_STOP=1 --username="$superuser" --dbname="$database" \
  --set=database="$database" <<'SQL'
\getenv owner_password POSTGRES_OWNER_PASSWORD
\getenv app_password POSTGRES_APP_PASSWORD

SELECT 'CREATE ROLE scoresvc_owner'
  WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'scoresvc_owner') \gexec
SELECT 'CREATE ROLE scoresvc_app'
  WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'scoresvc_app') \gexec
ALTER ROLE scoresvc_owner WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION
  NOBYPASSRLS PASSWORD :'owner_password';
ALTER ROLE scoresvc_app WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION
  NOBYPASSRLS PASSWORD :'app_password';

-- The database stays the superuser's. Only the two roles connect to it, and neither may make
-- temporary tables (PUBLIC's default) or schemas: scoresvc needs none.
REVOKE ALL ON DATABASE :"database" FROM PUBLIC;
GRANT CONNECT ON DATABASE :"database" TO scoresvc_owner, scoresvc_app;

-- The owner owns the schema the migrations create their tables in; nobody else creates there
-- (PostgreSQL 15's default too, stated for older servers and older databases).
ALTER SCHEMA public OWNER TO scoresvc_owner;
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO scoresvc_app;

-- A database made before these roles: its tables, views, sequences and functions in public
-- become the owner's. A table's own sequences and indexes follow it; an extension's objects
-- stay its own.
DO $$
DECLARE
  statement text;
BEGIN
  FOR statement IN
    SELECT format('ALTER %s %s OWNER TO scoresvc_owner',
                  CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                                 WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END,
                  c.oid::regclass)
      FROM pg_class c
     WHERE c.relnamespace = 'public'::regnamespace
       AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
       AND c.relowner <> 'scoresvc_owner'::regrole
       AND NOT EXISTS (SELECT FROM pg_depend d
                        WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                          AND d.deptype IN ('a', 'i', 'e'))
    UNION ALL
    SELECT format('ALTER ROUTINE %s OWNER TO scoresvc_owner', p.oid::regprocedure)
      FROM pg_proc p
     WHERE p.pronamespace = 'public'::regnamespace
       AND p.prokind IN ('f', 'p')
       AND p.proowner <> 'scoresvc_owner'::regrole
       AND NOT EXISTS (SELECT FROM pg_depend d
                        WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                          AND d.deptype = 'e')
  LOOP
    EXECUTE statement;
  END LOOP;
END
$$;

-- What the replicas may do: on the tables there are now, and, by the owner's default
-- privileges, on every table and sequence a later migration creates.
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO scoresvc_app;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO scoresvc_app;
ALTER DEFAULT PRIVILEGES FOR ROLE scoresvc_owner IN SCHEMA public
  GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO scoresvc_app;
ALTER DEFAULT PRIVILEGES FOR ROLE scoresvc_owner IN SCHEMA public
  GRANT USAGE ON SEQUENCES TO scoresvc_app;
SQL

# The superuser only on the Unix socket: a rule ahead of every other, since the first rule that
# matches a connection decides. (Once: a second run finds it there.)
hba=$(psql --no-psqlrc --quiet --tuples-only --no-align --username="$superuser" \
  --dbname="$database" --command='SHOW hba_file')
rule="host all \"$superuser\" all reject"
if ! grep -qxF "$rule" "$hba"; then
  sed -i "1i # The superuser connects on the Unix socket only (scoresvc-roles.sh).\n$rule" "$hba"
  psql --no-psqlrc --quiet --username="$superuser" --dbname="$database" \
    --command='SELECT pg_reload_conf()' >/dev/null
fi
