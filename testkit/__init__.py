"""Real parts for tests and benchmarks: migrated databases, imported studies, running servers.

Torch-free and pytest-free, so `tests/` (through its fixtures) and `bench/` share one way of
making a PostgreSQL database from the migrations, importing a study and starting
`study-server serve`; never part of the server image.

    databases  DatabaseFactory (fresh migrated SQLite/PostgreSQL databases), session_for
    studies    import_study, register_hits, invite (lab invitation codes)
    servers    make_settings, start_live_server (uvicorn in a thread), serve_process (the real
               `study-server serve` in a subprocess), free_port
"""
