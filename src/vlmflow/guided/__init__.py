"""Guided visual-token pruning (seed 000, SGL): the pruning engine, guide importance, runner, early exit, reports."""
