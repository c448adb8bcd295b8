"""Alembic migrations of the audit store; run by ``healer.audit.migrate.upgrade``."""
