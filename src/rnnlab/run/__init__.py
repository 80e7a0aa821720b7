"""One run lifecycle for every command (``train``, ``eval``, ``predict``, ``generate``,
``ensemble``), read in this order:

- ``command``: compose the command's config once, check it, run the job (or a sweep's jobs)
  through Hydra;
- ``checks``: the pre-flight checks on that config (unknown keys and options, missing values,
  devices), each ending in one line;
- ``directory``: the run directory (what a run writes there, ``status.json``, refusing an earlier
  run's directory, cleaning up after a failed start);
- ``job``: one job's end (a user's mistake in one line with exit status 2, a failed sweep job
  recorded and the sweep going on, an interrupted run saying how to resume).
"""
