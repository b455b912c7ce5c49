"""MLflow's basic-auth app as the cloud stacks run it: one admin user, nobody else.

The tracking server starts with ``mlflow server --app-name basic-auth`` and
``MLFLOW_AUTH_CONFIG_PATH`` pointing at :func:`auth_ini`: the admin user is ``mlstack`` with the
password ``up`` generated (kept in the stack's secrets backend), other users get no permission,
and users live in their own database. The runner's client sends these credentials; the UI asks
for them in the browser.
"""

from __future__ import annotations

USERNAME = "mlstack"
APP_NAME = "basic-auth"
# configparser interpolates '%': the generated passwords and URLs are hex/URL-safe, no '%'.
AUTH_INI = """[mlflow]
default_permission = NO_PERMISSIONS
database_uri = {database_uri}
admin_username = {username}
admin_password = {password}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
"""

# Shell + Python run at container start: write the ini from the environment, then serve.
# Reads MLSTACK_TRACKER_PASSWORD and MLFLOW_AUTH_DATABASE_URI; writes MLFLOW_AUTH_CONFIG_PATH.
WRITE_INI = (
    "import os; p = os.environ['MLFLOW_AUTH_CONFIG_PATH']; "
    "fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600); "
    f"os.write(fd, {AUTH_INI!r}.format(database_uri=os.environ['MLFLOW_AUTH_DATABASE_URI'], "
    f"username={USERNAME!r}, password=os.environ['MLSTACK_TRACKER_PASSWORD']).encode()); "
    "os.close(fd)"
)


def auth_ini(database_uri: str, password: str, username: str = USERNAME) -> str:
    """The auth app's config file for one admin user (``MLFLOW_AUTH_CONFIG_PATH``)."""
    if "%" in password or "%" in database_uri:
        raise ValueError("the MLflow auth config cannot hold '%' (configparser interpolation)")
    return AUTH_INI.format(database_uri=database_uri, username=username, password=password)
