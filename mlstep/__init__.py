"""mlstep: multi-step training of transformer language models, built from scratch in PyTorch.

Read the package in this order (the README lists the files with their sizes): ``config``,
``attention``, ``transformer``, ``bert``, ``masking``, ``train``, ``finetune``, ``lora``, ``crf``,
``distill``, ``gpt``, ``generation``: they are the only modules at the top. The rest sits in a
folder named for its role: ``tokenizers``, ``tools`` (checks, devices and seeds, checkpoints,
plots), ``tasks`` (what the models are trained on, the model store, the course models),
``multistage`` (chapter 09's building blocks), ``experiments`` (every chapter's sweeps), ``data``,
``metrics`` and ``exercises`` (the teacher's tools).

One shape legend for the whole package, written on the line wherever a shape changes::

    B  batch                T  positions (of the queries)     S  positions of the keys / values
    D  hidden size          H  attention heads                K  head size, D / H
    F  feed-forward width   V  vocabulary size                C  classes
    M  rows picked out of (B, T): masked tokens, real tokens  R  LoRA rank

Conventions: a boolean attention mask means True = may attend (PyTorch's); an ``attention_mask``
``(B, T)`` has 1 = real token, 0 = padding; label −100 marks a position without a loss.
"""

from mlstep.attention import (
    MultiHeadAttention,
    causal_mask,
    padding_mask,
    scaled_dot_product_attention,
)
from mlstep.bert import (
    BertConfig,
    BertForPreTraining,
    BertModel,
    BertOutput,
    PreTrainingOutput,
    bert_from_hf,
    mlm_loss,
)
from mlstep.config import TransformerConfig
from mlstep.distill import (
    distillation_loss,
    distillation_step_fn,
    init_student_from_teacher,
    student_config,
)
from mlstep.finetune import (
    BertForSequenceClassification,
    BertForTokenClassification,
    GradualUnfreezer,
    classification_step,
    freeze,
    freeze_encoder,
    layerwise_lr_groups,
    unfreeze,
)
from mlstep.generation import generate
from mlstep.gpt import GPT, GPTConfig, GPTForSequenceClassification, GPTOutput, gpt_from_hf
from mlstep.lora import LoRALinear, apply_lora, merge_lora
from mlstep.masking import mask_tokens, nsp_pairs, sop_pairs
from mlstep.multistage.adapt import continue_pretraining, extend_vocabulary, new_words
from mlstep.multistage.curriculum import Curriculum
from mlstep.multistage.layerwise import LayerwiseClassifier, layerwise_loss
from mlstep.multistage.multitask import MultiTaskBatches, MultiTaskModel, multitask_step_fn
from mlstep.multistage.pipeline import run_stages
from mlstep.multistage.prune import (
    apply_masks,
    magnitude_masks,
    prune_heads,
    prune_neurons,
    structured_importance,
)
from mlstep.tokenizers.bpe import ByteLevelBPETokenizer
from mlstep.tokenizers.wordpiece import WordPieceTokenizer
from mlstep.tools.checkpoint import load_checkpoint, save_checkpoint
from mlstep.tools.runtime import IGNORE_INDEX, count_parameters, get_device, set_seed, set_threads
from mlstep.train import History, TrainConfig, train
from mlstep.transformer import FeedForward, Transformer, TransformerBlock, find_backbone

__version__ = "0.2.0"

__all__ = [
    # the model
    "TransformerConfig", "scaled_dot_product_attention", "padding_mask", "causal_mask",
    "MultiHeadAttention", "FeedForward", "TransformerBlock", "Transformer", "find_backbone",
    "BertConfig", "BertModel", "BertOutput", "BertForPreTraining", "PreTrainingOutput", "mlm_loss",
    "bert_from_hf", "WordPieceTokenizer",
    # pretraining data and training
    "mask_tokens", "nsp_pairs", "sop_pairs", "IGNORE_INDEX", "TrainConfig", "History", "train",
    "save_checkpoint", "load_checkpoint",
    # fine-tuning and distillation
    "BertForSequenceClassification", "BertForTokenClassification", "classification_step", "freeze",
    "unfreeze", "freeze_encoder", "GradualUnfreezer", "layerwise_lr_groups", "LoRALinear",
    "apply_lora", "merge_lora", "distillation_loss", "distillation_step_fn", "student_config",
    "init_student_from_teacher",
    # GPT
    "GPTConfig", "GPT", "GPTOutput", "gpt_from_hf", "GPTForSequenceClassification", "generate",
    "ByteLevelBPETokenizer",
    # utilities
    "get_device", "set_seed", "set_threads", "count_parameters",
    # multi-stage training (chapter 09)
    "LayerwiseClassifier", "layerwise_loss", "Curriculum", "MultiTaskModel", "MultiTaskBatches",
    "multitask_step_fn", "new_words", "extend_vocabulary", "continue_pretraining", "magnitude_masks",
    "apply_masks", "prune_heads", "prune_neurons", "structured_importance", "run_stages",
]
