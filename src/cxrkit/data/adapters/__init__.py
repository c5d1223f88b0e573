"""Adapters: each turns one published dataset layout into a CxrTable, and nothing else."""
