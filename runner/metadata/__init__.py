"""The metadata server (FastAPI + SQLAlchemy) and its typed client.

Import :mod:`runner.metadata.client` for the client: it needs pydantic only. The server
modules (``server``, ``db``, ``models``, ``api_*``) import FastAPI and SQLAlchemy.
"""

TOKEN_ENV = "MLSTACK_METADATA_TOKEN"
"""The environment variable that hands the server its bearer token (never argv)."""
