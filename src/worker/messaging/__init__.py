"""Adapters around aiokafka: clients, topic creation, the consume loop and the outbox relay."""
