#!/usr/bin/env bash
# First start of the postgres service only (docker-entrypoint-initdb.d): one role for the platform and
# a database each for the review store, MLflow and Airflow. The password comes from the environment
# (REVIEWOPS_DB_PASSWORD in .env), never from this file.
set -euo pipefail
: "${REVIEWOPS_DB_PASSWORD:?REVIEWOPS_DB_PASSWORD is not set}"

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
     --set=pw="$REVIEWOPS_DB_PASSWORD" <<'SQL'
SELECT 'CREATE ROLE reviewops LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'reviewops')\gexec
ALTER ROLE reviewops PASSWORD :'pw';
SELECT format('CREATE DATABASE %I OWNER reviewops', d)
  FROM unnest(ARRAY['reviews', 'mlflow', 'airflow']) AS d
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = d)\gexec
SQL
