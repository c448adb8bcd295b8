"""The HTTP API: incidents and their timelines from the audit store, daemon status."""

from healer.api.app import create_app

__all__ = ["create_app"]
