"""mlstep: multi-step training of transformer language models, built from scratch in PyTorch."""

from mlstep.attention import (
    MultiHeadAttention,
    causal_mask,
    padding_mask,
    scaled_dot_product_attention,
)
from mlstep.bert import (
    BertConfig,
    BertEmbeddings,
    BertForPreTraining,
    BertLMPredictionHead,
    BertModel,
    BertOutput,
    PreTrainingOutput,
    bert_from_hf,
    mlm_loss,
    nsp_loss,
)
from mlstep.checkpoint import load_checkpoint, save_checkpoint
from mlstep.distill import (
    HiddenProjection,
    InitReport,
    default_layer_map,
    distillation_loss,
    distillation_step_fn,
    hidden_state_loss,
    init_student_from_teacher,
    mlm_distillation_step_fn,
    soft_target_loss,
    student_config,
)
from mlstep.exercises import (
    CHECKS,
    check_attention,
    check_attention_weights,
    check_bert_parameter_count,
    check_causal_mask,
    check_distillation_loss,
    check_lora_linear,
    check_mask_tokens,
    check_merge_heads,
    check_mlm_loss,
    check_nsp_pairs,
    check_split_heads,
    check_wordpiece,
)
from mlstep.finetune import (
    BertForPairClassification,
    BertForSequenceClassification,
    BertForTokenClassification,
    ClassifierOutput,
    GradualUnfreezer,
    align_labels_to_pieces,
    apply_unfreezing,
    classification_step,
    freeze,
    freeze_encoder,
    gradual_unfreezing_schedule,
    layerwise_lr_groups,
    pieces_to_word_predictions,
    trainable_parameters,
    unfreeze,
    unfreezing_stages,
)
from mlstep.lora import LoRALinear, apply_lora, lora_parameters, merge_lora
from mlstep.masking import IGNORE_INDEX, mask_tokens, nsp_pairs, sop_pairs
from mlstep.metrics import (
    accuracy,
    bio_entities,
    confusion_matrix,
    entity_f1,
    perplexity,
    plot_confusion_matrix,
    precision_recall_f1,
)
from mlstep.tokenizer import SPECIAL_TOKENS, Encoding, WordPieceTokenizer, normalize_and_pretokenize
from mlstep.train import History, TrainConfig, evaluate, is_main_process, setup_distributed, train
from mlstep.transformer import (
    EncoderOutput,
    FeedForward,
    TransformerEncoder,
    TransformerEncoderLayer,
)
from mlstep.utils import autocast, count_parameters, get_device, set_seed, set_threads

__version__ = "0.1.0"

__all__ = [
    # attention
    "scaled_dot_product_attention", "padding_mask", "causal_mask", "MultiHeadAttention",
    # encoder and BERT
    "FeedForward", "TransformerEncoderLayer", "TransformerEncoder", "EncoderOutput",
    "BertConfig", "BertEmbeddings", "BertModel", "BertOutput", "BertLMPredictionHead",
    "BertForPreTraining", "PreTrainingOutput", "mlm_loss", "nsp_loss", "bert_from_hf",
    # tokenizer
    "WordPieceTokenizer", "Encoding", "SPECIAL_TOKENS", "normalize_and_pretokenize",
    # pretraining data
    "IGNORE_INDEX", "mask_tokens", "nsp_pairs", "sop_pairs",
    # training
    "TrainConfig", "History", "train", "evaluate", "setup_distributed", "is_main_process",
    "save_checkpoint", "load_checkpoint",
    # fine-tuning
    "ClassifierOutput", "BertForSequenceClassification", "BertForPairClassification",
    "BertForTokenClassification", "align_labels_to_pieces", "pieces_to_word_predictions",
    "classification_step", "freeze", "unfreeze", "freeze_encoder", "trainable_parameters",
    "unfreezing_stages", "apply_unfreezing", "gradual_unfreezing_schedule", "GradualUnfreezer",
    "layerwise_lr_groups", "LoRALinear", "apply_lora", "merge_lora", "lora_parameters",
    # metrics
    "accuracy", "precision_recall_f1", "confusion_matrix", "bio_entities", "entity_f1", "perplexity",
    "plot_confusion_matrix",
    # distillation
    "distillation_loss", "soft_target_loss", "hidden_state_loss", "HiddenProjection", "student_config",
    "default_layer_map", "init_student_from_teacher", "InitReport", "distillation_step_fn",
    "mlm_distillation_step_fn",
    # exercises
    "CHECKS", "check_attention", "check_attention_weights", "check_causal_mask",
    "check_merge_heads", "check_split_heads", "check_wordpiece", "check_bert_parameter_count",
    "check_mask_tokens", "check_mlm_loss", "check_nsp_pairs", "check_lora_linear",
    "check_distillation_loss",
    # utilities
    "get_device", "set_seed", "set_threads", "count_parameters", "autocast",
]
