"""Shared fixtures. Servers and engines are started by the tests themselves, never assumed."""

pytest_plugins = [
    "tests.fixtures.spark",
    "tests.fixtures.s3",
    "tests.fixtures.mirror",
]
