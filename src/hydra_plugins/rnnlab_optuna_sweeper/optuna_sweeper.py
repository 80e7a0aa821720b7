"""The sweeper that ``conf/hydra/sweeper/optuna.yaml`` names. Hydra builds a sweeper only from a
class defined in the ``hydra_plugins`` package (``hydra.core.plugins``), so the class lives here
and its code in ``rnnlab.search.sweeper``. Hydra imports this module when any command starts:
it imports no Optuna."""

from rnnlab.search.sweeper import StudySweeper


class OptunaSweeper(StudySweeper):
    """``hydra.sweeper._target_`` of ``hparams_search=optuna``; see ``rnnlab.search.sweeper``."""
