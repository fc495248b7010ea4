"""Experiments built on the library: each runs end to end from one command and writes tables, figures and a report."""
