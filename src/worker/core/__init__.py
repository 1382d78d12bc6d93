"""The pure core: rules and data shapes with no I/O. Imports neither asyncpg nor aiokafka."""
