"""A task defined outside ``src/``, as a user would add one in a package of their own: is the
first bit of a random bit sequence a 1? (``tests/test_task_outside_src.py`` runs it through
every command.)

Its DataModule (``data.py``), LightningModule (``model.py``) and configs (``conf/``, put on
Hydra's search path with ``hydra.searchpath=[file://<this folder>/conf]``) meet rnnlab only
through its contract: ``TaskDataModule``, ``SequenceModule``, ``Batch`` and, for ensembles, the
``Averageable`` capability. Runs build the two classes because ``user_classes`` lists them.
"""

from pathlib import Path

CONF = Path(__file__).resolve().parent / "conf"  # the extra Hydra search path
DATA = "tests.first_bit_task.data.FirstBitDataModule"
MODEL = "tests.first_bit_task.model.FirstBitClassifier"
