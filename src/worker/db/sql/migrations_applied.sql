-- Versions already applied, with the checksum of the text that was applied.
SELECT version, checksum FROM schema_migrations
