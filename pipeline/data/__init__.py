"""Datasets: what a dataset is (spec), reading and verifying IDX files (idx), fetching them (fetch)."""
