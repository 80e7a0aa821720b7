"""rnnlab's Optuna sweeper, where Hydra looks for plugins (``rnnlab.search`` holds the code)."""
