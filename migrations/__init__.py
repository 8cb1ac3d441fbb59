"""Alembic migrations: the only way the study schema is made (`study-server migrate`)."""
