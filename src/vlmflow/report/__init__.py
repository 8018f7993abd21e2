"""Reporting across families: results/summary.csv and ablation tables."""
