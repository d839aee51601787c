-- The warehouse gets its own database beside Dagster's (xpm-pipeline migrates its schema on first use).
CREATE DATABASE warehouse;
