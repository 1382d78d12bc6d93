"""The local stack behind `scripts/stack`: Kafka, PostgreSQL and stripe-mock on 127.0.0.1.

Standard library only: `scripts/test` and `scripts/run` call it before `.venv` exists. It is not
part of the worker's wheel.
"""
