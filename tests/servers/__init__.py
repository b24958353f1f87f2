"""Real servers on 127.0.0.1 for tests; fixtures are registered in tests/conftest.py."""
