"""Evaluation metrics: accuracy, precision/recall/F1, confusion matrix, entity-level F1
(:mod:`~mlstep.metrics.classification`); perplexity and BLEU (:mod:`~mlstep.metrics.language`).

Pure Python and numpy; scikit-learn and sacrebleu are only the references the tests compare
against, never runtime dependencies.
"""

from mlstep.metrics.classification import (
    accuracy,
    bio_entities,
    confusion_matrix,
    entity_f1,
    precision_recall_f1,
)
from mlstep.metrics.language import bleu, bleu_tokenize, perplexity

__all__ = ["accuracy", "precision_recall_f1", "confusion_matrix", "bio_entities", "entity_f1",
           "perplexity", "bleu", "bleu_tokenize"]
