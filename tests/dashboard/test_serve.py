"""`study-server serve --app`: the factory to serve is named, and a wrong name is bad input.
(The compose file's command, which serves the dashboard, runs in tests/server/test_compose.py.)"""

from __future__ import annotations

from study_server.cli import main as study_server


def test_an_app_that_cannot_be_imported_is_exit_status_2_naming_it(sqlite_database_url, capsys):
    for app in ("analysis.dashboard.app:nothing_here", "no_such_module:create_app", "nocolon"):
        argv = ["serve", "--database-url", sqlite_database_url, "--app", app, "--port", "0"]
        assert study_server(argv) == 2
        assert f"--app {app!r}" in capsys.readouterr().err
