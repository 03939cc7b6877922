-- Runs once, as the bootstrap superuser (POSTGRES_USER), when the data volume is empty (docker-entrypoint-initdb.d;
-- psql runs it, so the \set lines read the role passwords from the Docker secret files). The same roles, databases
-- and owners as `nmdose stack up` makes locally (nmdose/db/roles.py; names from config/postgresql.yaml):
--   nmdose_owner    owns the nmdose database and runs the migrations (the research PACS plugin at start)
--   nmdose_worker   the pipeline: rows of rpacs/dose/jobs, no DDL      } grants: applied by the owner after
--   nmdose_web      the pages: reads, writes only dose.web_cache       } every migration run
--   nmdose_orthanc  owns orthanc_index, Orthanc's index, and nothing else
-- None of them is a superuser, may create databases or roles. Nothing at runtime connects as the superuser.
\set ON_ERROR_STOP on
\set owner_password `cat /run/secrets/nmdose_db_owner_password`
\set worker_password `cat /run/secrets/nmdose_db_worker_password`
\set web_password `cat /run/secrets/nmdose_db_web_password`
\set orthanc_password `cat /run/secrets/nmdose_orthanc_db_password`

CREATE ROLE nmdose_owner LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD :'owner_password';
CREATE ROLE nmdose_worker LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD :'worker_password';
CREATE ROLE nmdose_web LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD :'web_password';
CREATE ROLE nmdose_orthanc LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD :'orthanc_password';

-- nmdose (POSTGRES_DB, made by the entrypoint): the owner's; only our roles may connect
ALTER DATABASE nmdose OWNER TO nmdose_owner;
REVOKE ALL ON DATABASE nmdose FROM PUBLIC;
GRANT CONNECT ON DATABASE nmdose TO nmdose_worker, nmdose_web;

-- Orthanc's own index lives in a separate database from nmdose's schemas (config/postgresql.yaml)
CREATE DATABASE orthanc_index OWNER nmdose_orthanc ENCODING 'UTF8' TEMPLATE template0;
REVOKE ALL ON DATABASE orthanc_index FROM PUBLIC;
