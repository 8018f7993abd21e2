"""Infrastructure every family uses: files, errors, records, settings, devices, models, checkpoints, figures."""
