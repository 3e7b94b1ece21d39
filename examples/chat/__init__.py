"""A package only so that mypy can tell the two examples/*/app.py modules apart."""
