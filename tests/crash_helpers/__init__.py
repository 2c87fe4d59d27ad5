"""Scripts run as real processes by ``tests/test_runtime_crash.py``."""
