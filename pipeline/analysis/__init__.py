"""Claims over trained models: statistics and verdicts (C1, C2), bias check, STDP (C5), energy (C4), headline, report."""
