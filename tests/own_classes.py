"""A user's own classes, defined outside rnnlab, for tests/test_user_classes.py."""

from __future__ import annotations

from rnnlab.data.classification import ClassificationDataModule
from rnnlab.models.encoder import RNNEncoder


class OwnVowels(ClassificationDataModule):
    """A DataModule of the user's: JapaneseVowels, under a class of its own."""


class OwnEncoder(RNNEncoder):
    """An encoder of the user's: rnnlab's, under a class of its own."""


class NotBuilt:
    """A class, but of no kind a run builds."""


not_a_class = OwnEncoder.forward
