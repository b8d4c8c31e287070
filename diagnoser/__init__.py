"""diagnoser package."""
