-- Orthanc's own index lives in a separate database from nmdose's schemas (config/postgresql.yaml).
CREATE DATABASE orthanc_index ENCODING 'UTF8' TEMPLATE template0;
