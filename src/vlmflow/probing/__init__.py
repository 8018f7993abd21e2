"""Hidden-state probing (seed 004): swap-pair extraction, consistency metrics, analysis, quads, plots."""
