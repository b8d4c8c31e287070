"""The demo: the whole system on one scenario (python -m demo)."""
