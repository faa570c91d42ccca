-- Runs once, when the data directory is first initialised (docker-entrypoint-initdb.d).
-- One database per service, all owned by the dev role (POSTGRES_USER=loyalty).
CREATE DATABASE gateway OWNER loyalty;
CREATE DATABASE points OWNER loyalty;
CREATE DATABASE promotions OWNER loyalty;
CREATE DATABASE tiers OWNER loyalty;
