"""Persistent state: SQLAlchemy 2 (async) tables, Alembic migrations, and small repositories."""
