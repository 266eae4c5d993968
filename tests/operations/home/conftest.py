"""Home fixtures: English-speaking clients (the tests read English words)."""
from tests.english import *  # noqa: F403 - the English fixtures
