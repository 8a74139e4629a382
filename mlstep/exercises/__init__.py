"""Checks for the chapters' exercises: run a learner's function against mlstep's reference.

Each ``check_*(fn)`` calls the learner's function on a few fresh random inputs (seeded from its own
``torch.Generator``, so the global RNG of the notebook is left alone), compares the result with the
reference implementation in mlstep, prints **one** line and returns True/False::

    ✅ check_attention_weights: passed (4 cases)
    ❌ check_attention_weights: looks unscaled: ... (case 1/4: q (5, 8), k (7, 8))

A check never raises because of the learner's code: an exception inside ``fn`` (the student
edition's ``NotImplementedError`` included) is reported as a failure. When the plain comparison
fails, the output is compared with the typical wrong answers (no √d_k, mask ignored, heads merged
in the wrong order, 15 % [MASK] instead of 15 % chosen, KL without T², ...) so the message can say
*what* is wrong, not only that something is.

If the environment variable ``MLSTEP_GRADE_REPORT`` names a file, every check also appends one
JSON line ``{"check": name, "passed": bool, "message": str}`` to it (``python -m mlstep.exercises
grade`` reads them).

The checks, by chapter (one submodule each; import them all from here):

* 01–02 :mod:`~mlstep.exercises.attention`: ``check_attention_weights``, ``check_attention``,
  ``check_causal_mask``, ``check_split_heads``, ``check_merge_heads``
* 03 :mod:`~mlstep.exercises.encoder`: ``check_wordpiece``, ``check_bert_parameter_count``
* 04 :mod:`~mlstep.exercises.masking`: ``check_mask_tokens``, ``check_mlm_loss``
* 05 :mod:`~mlstep.exercises.pairs`: ``check_nsp_pairs``, ``check_sop_pairs``
* 06 :mod:`~mlstep.exercises.finetuning`: ``check_freeze_encoder``, ``check_lora_linear``
* 07 :mod:`~mlstep.exercises.distillation`: ``check_soft_targets``, ``check_distillation_loss``
* 08 :mod:`~mlstep.exercises.gpt`: ``check_next_token_loss``, ``check_top_k_filter``
* 09 :mod:`~mlstep.exercises.multistage`: ``check_layerwise_loss``, ``check_magnitude_mask``
* 10 :mod:`~mlstep.exercises.realtext`: ``check_read_conllu``, ``check_unseen_word_accuracy``
* 11 :mod:`~mlstep.exercises.posttrain`: ``check_assistant_labels``, ``check_dpo_loss``,
  ``check_group_advantages``, and the experiment ``check_equal_group_share``
* 12 :mod:`~mlstep.exercises.modern`: ``check_rope``, ``check_rms_norm``, and the experiment
  ``check_rope_match_at``
* experiments (predict, measure, compare with a stated range) :mod:`~mlstep.exercises.experiments`:
  ``check_top_key_weight`` (01), ``check_attention_flop_share`` (02),
  ``check_pieces_per_word`` (03), ``check_masked_accuracy_at`` (04),
  ``check_accuracy_on_label`` (05), ``check_linear_probe`` (06),
  ``check_soft_target_entropy`` (07)
* predictions (08–10: predict, the chapter measures, compare with the measured range)
  :mod:`~mlstep.exercises.prediction`: ``check_prediction`` (not a function check)

Adding a check: in the chapter's submodule, decorate ``check_x(fn) -> (passed, message)`` with
``@_register`` (from :mod:`mlstep.exercises._core`); for one tensor per input, build a list of
``_Case`` (inputs, the reference output, the outputs of known wrong variants with a diagnosis
each) and return ``_run_cases(fn, cases)``. Then re-export it here; it appears in :data:`CHECKS`.
"""

from __future__ import annotations

from mlstep.exercises._core import CHECKS, REPORT_ENV
from mlstep.exercises.attention import (
    MERGE_HEADS,
    SPLIT_HEADS,
    check_attention,
    check_attention_weights,
    check_causal_mask,
    check_merge_heads,
    check_split_heads,
)
from mlstep.exercises.distillation import check_distillation_loss, check_soft_targets
from mlstep.exercises.encoder import check_bert_parameter_count, check_wordpiece
from mlstep.exercises.experiments import (
    check_accuracy_on_label,
    check_attention_flop_share,
    check_linear_probe,
    check_masked_accuracy_at,
    check_pieces_per_word,
    check_soft_target_entropy,
    check_top_key_weight,
)
from mlstep.exercises.finetuning import check_freeze_encoder, check_lora_linear
from mlstep.exercises.gpt import check_next_token_loss, check_top_k_filter
from mlstep.exercises.masking import check_mask_tokens, check_mlm_loss
from mlstep.exercises.modern import check_rms_norm, check_rope, check_rope_match_at
from mlstep.exercises.multistage import check_layerwise_loss, check_magnitude_mask
from mlstep.exercises.pairs import check_nsp_pairs, check_sop_pairs
from mlstep.exercises.posttrain import (
    check_assistant_labels,
    check_dpo_loss,
    check_equal_group_share,
    check_group_advantages,
)
from mlstep.exercises.prediction import check_prediction
from mlstep.exercises.realtext import check_read_conllu, check_unseen_word_accuracy

__all__ = [
    "CHECKS",
    "REPORT_ENV",
    "MERGE_HEADS",
    "SPLIT_HEADS",
    # 01-02 attention
    "check_attention_weights",
    "check_attention",
    "check_causal_mask",
    "check_split_heads",
    "check_merge_heads",
    # 03 encoder and tokenizer
    "check_wordpiece",
    "check_bert_parameter_count",
    # 04-05 pretraining
    "check_mask_tokens",
    "check_mlm_loss",
    "check_nsp_pairs",
    "check_sop_pairs",
    # 06 fine-tuning
    "check_freeze_encoder",
    "check_lora_linear",
    # 07 distillation
    "check_soft_targets",
    "check_distillation_loss",
    # 08 GPT
    "check_next_token_loss",
    "check_top_k_filter",
    # 09 multi-stage training
    "check_layerwise_loss",
    "check_magnitude_mask",
    # 10 real English
    "check_read_conllu",
    "check_unseen_word_accuracy",
    # 12 modern decoders
    "check_rope",
    "check_rms_norm",
    "check_rope_match_at",
    # experiments: predict, measure, compare with a stated range
    "check_top_key_weight",
    "check_attention_flop_share",
    "check_pieces_per_word",
    "check_masked_accuracy_at",
    "check_accuracy_on_label",
    "check_linear_probe",
    "check_soft_target_entropy",
    # predictions: predict, the chapter measures, compare with the measured range
    "check_prediction",
    # 11 post-training
    "check_assistant_labels",
    "check_dpo_loss",
    "check_group_advantages",
    "check_equal_group_share",
]
