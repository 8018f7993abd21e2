"""The foveated VLM (seed 001): query encoder, model, data, trainer, evaluation, sweeps, figures."""
