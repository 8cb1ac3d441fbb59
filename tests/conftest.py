"""Shared pytest set-up. Fixtures live in tests/fixtures/, one module per side of the system."""

pytest_plugins = [
    "tests.fixtures.model",
    "tests.fixtures.server",
    "tests.fixtures.mturk",
    "tests.fixtures.prolific",
]
