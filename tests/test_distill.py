"""mlstep.distill against hand-written formulas and PyTorch's own losses, plus the student
initialisation, the step functions, and a short training run that must close the gap to a teacher."""

from __future__ import annotations

import dataclasses
import math
from collections import namedtuple

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mlstep.bert import BertConfig, BertForPreTraining, BertModel
from mlstep.distill import (
    default_layer_map,
    distillation_loss,
    distillation_step_fn,
    init_embeddings_by_projection,
    init_student_from_teacher,
    soft_target_loss,
    student_config,
)
from mlstep.finetune import BertForSequenceClassification, BertForTokenClassification
from mlstep.train import TrainConfig, train

ClassifierOutput = namedtuple("ClassifierOutput", "loss logits")


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


class TinyClassifier(nn.Module):
    """Stand-in for mlstep.finetune's classifier: a BERT at ``.bert`` plus a linear head."""

    def __init__(self, config: BertConfig, num_labels: int = 3):
        super().__init__()
        self.bert = BertModel(config)
        self.classifier = nn.Linear(config.hidden_size, num_labels)

    def forward(self, input_ids, token_type_ids=None, attention_mask=None, labels=None):
        logits = self.classifier(self.bert(input_ids, token_type_ids, attention_mask).pooled_output)
        return ClassifierOutput(None if labels is None else F.cross_entropy(logits, labels), logits)


def cfg(**kw) -> BertConfig:
    base = dict(vocab_size=40, hidden_size=32, num_layers=4, num_heads=4, intermediate_size=64,
                max_position=16, dropout=0.0)
    return BertConfig(**{**base, **kw})


def logits_pair(rows=6, classes=5, seed=0, dtype=torch.float64, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    s = scale * torch.randn(rows, classes, generator=g, dtype=dtype)
    t = scale * torch.randn(rows, classes, generator=g, dtype=dtype)
    y = torch.randint(0, classes, (rows,), generator=g)
    return s, t, y


def batch_of(b=5, n=9, vocab=40, seed=0, labels=None, pad=True):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (b, n), generator=g)
    mask = torch.ones(b, n, dtype=torch.long)
    if pad:
        mask[1, 6:] = 0
        mask[3, 3:] = 0
    batch = {"input_ids": ids, "token_type_ids": torch.zeros_like(ids), "attention_mask": mask}
    if labels is not None:
        batch["labels"] = labels
    return batch


def b_inputs(b):
    """The model inputs of a batch (no labels)."""
    return {k: b[k] for k in ("input_ids", "token_type_ids", "attention_mask")}


# --- distillation_loss against formulas -----------------------------------------------------------

def hand_written(s, t, y, T, alpha):
    """(1-α)·CE + α·T²·KL with explicit softmax, logs and sums (float64)."""
    def softmax(z):
        e = torch.exp(z - z.max(dim=1, keepdim=True).values)
        return e / e.sum(dim=1, keepdim=True)

    p_t, p_s = softmax(t / T), softmax(s / T)
    kl = (p_t * (torch.log(p_t) - torch.log(p_s))).sum() / s.shape[0]  # batchmean
    ce = -torch.log(softmax(s)[torch.arange(len(y)), y]).sum() / len(y)
    return (1 - alpha) * ce + alpha * T**2 * kl


@pytest.mark.parametrize("T, alpha", [(1.0, 0.5), (2.0, 0.5), (4.0, 0.9), (0.5, 0.2)])
def test_loss_matches_hand_written_formula(T, alpha):
    s, t, y = logits_pair()
    got = distillation_loss(s, t, y, temperature=T, alpha=alpha)
    torch.testing.assert_close(got, hand_written(s, t, y, T, alpha), atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("T, alpha", [(1.0, 0.3), (3.0, 0.7)])
def test_loss_matches_torch_composition(T, alpha):
    s, t, y = logits_pair(rows=8, classes=7, seed=1)
    kl = F.kl_div(F.log_softmax(s / T, dim=-1), F.softmax(t / T, dim=-1), reduction="batchmean")
    ref = alpha * T**2 * kl + (1 - alpha) * F.cross_entropy(s, y)
    torch.testing.assert_close(distillation_loss(s, t, y, T, alpha), ref, atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(soft_target_loss(s, t, T), T**2 * kl, atol=1e-12, rtol=1e-10)


def test_zero_kl_when_student_equals_teacher():
    s, _, y = logits_pair()
    assert soft_target_loss(s, s.clone(), 3.0).abs() < 1e-12
    torch.testing.assert_close(distillation_loss(s, s.clone(), y, 3.0, 0.4), 0.6 * F.cross_entropy(s, y))


def test_batchmean_not_mean():
    s, t, _ = logits_pair(rows=4, classes=9)
    # reduction="mean" (deprecated, warns) is the mean over every element: what "none" + .mean() gives
    mean_reduced = F.kl_div(F.log_softmax(s / 2, -1), F.softmax(t / 2, -1), reduction="none").mean() * 4
    # "mean" also divides by the number of classes C: off by exactly that factor
    torch.testing.assert_close(soft_target_loss(s, t, 2.0), 9 * mean_reduced)
    assert not torch.allclose(soft_target_loss(s, t, 2.0), mean_reduced)


def test_t_squared_keeps_gradient_scale_for_large_t():
    s, t, _ = logits_pair(rows=4, classes=6, scale=1.0)

    def grad_norm(T, scaled):
        x = s.clone().requires_grad_(True)
        loss = soft_target_loss(x, t, T) / (1.0 if scaled else T**2)
        loss.backward()
        return x.grad.norm().item()

    # with T²: about the same gradient at T=20 and T=40; without it: 4x smaller at T=40
    assert grad_norm(20, True) / grad_norm(40, True) == pytest.approx(1.0, rel=0.02)
    assert grad_norm(20, False) / grad_norm(40, False) == pytest.approx(4.0, rel=0.02)


def test_alpha_extremes_and_no_labels():
    s, t, y = logits_pair()
    torch.testing.assert_close(distillation_loss(s, t, y, 2.0, alpha=0.0), F.cross_entropy(s, y))
    torch.testing.assert_close(distillation_loss(s, t, y, 2.0, alpha=1.0), soft_target_loss(s, t, 2.0))
    # no labels: the soft term alone, whatever alpha (except 0, which asks for labels)
    torch.testing.assert_close(distillation_loss(s, t, None, 2.0, alpha=0.5), soft_target_loss(s, t, 2.0))
    with pytest.raises(ValueError, match="alpha=0"):
        distillation_loss(s, t, None, 2.0, alpha=0.0)


def test_ignore_index_rows_excluded_from_ce_only():
    s, t, y = logits_pair(rows=8, classes=11, seed=2)
    y = y.clone()
    y[[1, 4, 5]] = -100
    keep = y != -100
    ref = 0.5 * F.cross_entropy(s[keep], y[keep]) + 0.5 * soft_target_loss(s, t, 2.0)  # KL: all rows
    torch.testing.assert_close(distillation_loss(s, t, y), ref)
    all_ignored = torch.full_like(y, -100)
    torch.testing.assert_close(distillation_loss(s, t, all_ignored), 0.5 * soft_target_loss(s, t, 2.0))


def test_mlm_shaped_and_3d_logits():
    s, t, y = logits_pair(rows=12, classes=50, seed=3)
    flat = distillation_loss(s, t, y, 2.0, 0.5)
    got = distillation_loss(s.reshape(3, 4, 50), t.reshape(3, 4, 50), y.reshape(3, 4), 2.0, 0.5)
    torch.testing.assert_close(got, flat)
    # bf16 logits (autocast) give a float32 loss
    assert distillation_loss(s.bfloat16(), t.bfloat16(), y).dtype == torch.float32


def test_gradients_do_not_reach_the_teacher():
    torch.manual_seed(0)
    teacher, student = nn.Linear(4, 3), nn.Linear(4, 3)
    x, y = torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1])
    distillation_loss(student(x), teacher(x), y).backward()  # teacher logits built with a graph
    assert teacher.weight.grad is None and teacher.bias.grad is None
    assert student.weight.grad is not None and student.weight.grad.abs().sum() > 0


def test_bad_inputs_are_named():
    s, t, y = logits_pair()
    with pytest.raises(ValueError, match=r"\(6, 5\).*\(6, 4\)"):
        distillation_loss(s, t[:, :4], y)
    with pytest.raises(ValueError, match="temperature"):
        distillation_loss(s, t, y, temperature=0.0)
    with pytest.raises(ValueError, match="alpha"):
        distillation_loss(s, t, y, alpha=1.5)
    with pytest.raises(ValueError, match=r"labels must be in \[0, classes=5\) or -100"):
        distillation_loss(s, t, y + 5)
    with pytest.raises(ValueError, match="labels"):
        distillation_loss(s, t, y[:3])
    with pytest.raises(TypeError, match="integer"):
        distillation_loss(s, t, y.double())


# --- the student from the teacher ---------------------------------------------------------------

def test_default_layer_map_and_student_config():
    assert default_layer_map(12, 6) == [0, 2, 4, 7, 9, 11]  # DistilBERT's extraction script
    assert default_layer_map(4, 2) == [0, 3]
    assert default_layer_map(4, 1) == [0]
    assert default_layer_map(4, 4) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="1 to teacher_layers=4"):
        default_layer_map(4, 5)
    teacher = cfg()
    assert student_config(teacher) == dataclasses.replace(teacher, num_layers=2)
    narrow = student_config(teacher, num_layers=1, hidden_size=16, num_heads=2)
    assert (narrow.num_layers, narrow.hidden_size, narrow.intermediate_size, narrow.num_heads) == (1, 16, 32, 2)


def _layer_state(bert: BertModel, i: int) -> dict[str, torch.Tensor]:
    return bert.encoder.layers[i].state_dict()


@pytest.mark.parametrize("pre_norm", [False, True])
def test_init_student_copies_chosen_layers(pre_norm):
    torch.manual_seed(0)
    teacher, student = BertModel(cfg(pre_norm=pre_norm)), BertModel(cfg(num_layers=2, pre_norm=pre_norm))
    report = init_student_from_teacher(student, teacher)
    assert report.layer_map == (0, 3) and report.skipped == ()
    for i, j in enumerate((0, 3)):
        s, t = _layer_state(student, i), _layer_state(teacher, j)
        assert s.keys() == t.keys() and all(torch.equal(s[k], t[k]) for k in s)
    s_sd, t_sd = student.state_dict(), teacher.state_dict()
    for key in s_sd:
        if not key.startswith("encoder.layers."):
            assert torch.equal(s_sd[key], t_sd[key]), key  # embeddings, pooler, final_norm
    assert set(report.copied) == set(s_sd)
    init_student_from_teacher(student, teacher, layer_map=[2, 1])
    assert all(torch.equal(v, _layer_state(teacher, 2)[k]) for k, v in _layer_state(student, 0).items())


def test_student_with_all_layers_computes_the_teacher():
    torch.manual_seed(0)
    teacher, student = BertForPreTraining(cfg()), BertForPreTraining(cfg())
    init_student_from_teacher(student, teacher)
    b = batch_of()
    for a, c in zip(student.eval()(**b_inputs(b)), teacher.eval()(**b_inputs(b)), strict=True):
        if a is not None:
            torch.testing.assert_close(a, c)


def test_init_pretraining_and_classifier_heads():
    torch.manual_seed(0)
    teacher, student = BertForPreTraining(cfg()), BertForPreTraining(cfg(num_layers=2))
    report = init_student_from_teacher(student, teacher)
    for name in ("predictions.bias", "predictions.transform.dense.weight", "seq_relationship.weight",
                 "bert.encoder.layers.1.ffn.fc1.weight"):
        assert name in report.copied
    assert torch.equal(student.seq_relationship.weight, teacher.seq_relationship.weight)
    assert torch.equal(student.predictions.bias, teacher.predictions.bias)
    assert student.predictions.decoder.weight is student.bert.embeddings.word_embeddings.weight  # still tied
    assert torch.equal(student.bert.encoder.layers[1].ffn.fc1.weight, teacher.bert.encoder.layers[3].ffn.fc1.weight)

    t_clf, same, other = TinyClassifier(cfg(), 3), TinyClassifier(cfg(num_layers=1), 3), TinyClassifier(cfg(num_layers=1), 5)
    assert "classifier.weight" in init_student_from_teacher(same, t_clf).copied
    assert torch.equal(same.classifier.weight, t_clf.classifier.weight)
    before = other.classifier.weight.clone()
    report = init_student_from_teacher(other, t_clf)
    assert set(report.skipped) == {"classifier.weight", "classifier.bias"}
    assert torch.equal(other.classifier.weight, before)
    assert torch.equal(other.bert.embeddings.word_embeddings.weight, t_clf.bert.embeddings.word_embeddings.weight)


def test_init_errors_name_the_problem():
    teacher = BertModel(cfg())
    with pytest.raises(ValueError, match=r"embeddings\.word_embeddings\.weight: student \(40, 16\) vs teacher .*\(40, 32\)"):
        init_student_from_teacher(BertModel(student_config(cfg(), num_layers=2, hidden_size=16)), teacher)
    with pytest.raises(ValueError, match="num_heads"):
        init_student_from_teacher(BertModel(cfg(num_layers=2, num_heads=2)), teacher)
    with pytest.raises(ValueError, match="layer_map"):
        init_student_from_teacher(BertModel(cfg(num_layers=2)), teacher, layer_map=[0, 4])
    with pytest.raises(TypeError, match="BertModel"):
        init_student_from_teacher(nn.Linear(2, 2), teacher)


# --- step functions -----------------------------------------------------------------------------

def test_step_fn_with_and_without_labels():
    torch.manual_seed(0)
    teacher, student = TinyClassifier(cfg(dropout=0.1)), TinyClassifier(cfg(num_layers=1))
    teacher.train()
    labels = torch.tensor([0, 2, 1, 1, 0])
    step = distillation_step_fn(teacher, temperature=3.0, alpha=0.25)
    loss = step(student, batch_of(labels=labels))
    assert not teacher.training  # the teacher runs in eval mode (no dropout noise in the targets)
    b = batch_of()
    with torch.no_grad():
        t_logits = teacher(**b_inputs(b)).logits
    s_logits = student(**b_inputs(b)).logits
    torch.testing.assert_close(loss, distillation_loss(s_logits, t_logits, labels, 3.0, 0.25))
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert student.classifier.weight.grad is not None

    unlabeled = step(student, batch_of())  # transfer set: soft targets only
    torch.testing.assert_close(unlabeled, soft_target_loss(s_logits, t_logits, 3.0))
    with pytest.raises(ValueError, match="no labels"):
        distillation_step_fn(teacher, alpha=0.0)(student, batch_of())


def test_step_fn_under_bf16_autocast():
    """mlstep.train runs step_fn under autocast (bf16 on GPU): the loss stays float32 and close."""
    torch.manual_seed(0)
    teacher, student = TinyClassifier(cfg()), TinyClassifier(cfg(num_layers=1))
    b = batch_of(labels=torch.tensor([0, 2, 1, 1, 0]))
    step = distillation_step_fn(teacher, 2.0, 0.5)
    ref = step(student, b)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = step(student, b)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, ref, atol=0.05, rtol=0.05)


def test_step_fn_with_mlstep_finetune_heads():
    torch.manual_seed(0)
    b = batch_of()
    # sequence classification (mean pooling, as the course's students): the head is copied too
    teacher = BertForSequenceClassification(cfg(), num_labels=3, dropout=0.0, pooling="mean")
    student = BertForSequenceClassification(cfg(num_layers=2), num_labels=3, dropout=0.0, pooling="mean")
    assert "classifier.weight" in init_student_from_teacher(student, teacher).copied
    labels = torch.tensor([0, 2, 1, 1, 0])
    loss = distillation_step_fn(teacher, 2.0, 0.5)(student, {**b, "labels": labels})
    with torch.no_grad():
        t_out = teacher.eval()(**b_inputs(b))
    s_out = student(**b_inputs(b))
    torch.testing.assert_close(loss, distillation_loss(s_out.logits, t_out.logits, labels))
    # token classification: soft targets at real tokens only, CE where labels are not -100
    teacher = BertForTokenClassification(cfg(), num_labels=4, dropout=0.0)
    student = BertForTokenClassification(cfg(num_layers=2), num_labels=4, dropout=0.0)
    tags = torch.randint(0, 4, b["input_ids"].shape, generator=torch.Generator().manual_seed(0))
    tags[b["attention_mask"] == 0] = -100
    tags[0, 0] = -100
    loss = distillation_step_fn(teacher, 2.0, 0.5)(student, {**b, "labels": tags})
    real = b["attention_mask"].bool()
    with torch.no_grad():
        t_logits = teacher.eval()(**b_inputs(b)).logits
    s_logits = student(**b_inputs(b)).logits
    torch.testing.assert_close(loss, distillation_loss(s_logits[real], t_logits[real], tags[real]))


def test_training_on_soft_targets_closes_the_gap():
    """~50 steps on an unlabeled transfer set bring a fresh 1-layer student close to a teacher."""
    torch.manual_seed(0)
    teacher = TinyClassifier(cfg(num_layers=2))
    with torch.no_grad():
        teacher.classifier.weight.normal_(0, 3.0)  # confident, varied targets (a fresh head is ~uniform)
    student = TinyClassifier(cfg(num_layers=1))
    data = [batch_of(b=32, n=8, seed=s, pad=False) for s in range(10)]
    held_out = batch_of(b=64, n=8, seed=99, pad=False)

    def kl_to_teacher():
        with torch.no_grad():
            return soft_target_loss(student.eval()(**b_inputs(held_out)).logits,
                                    teacher.eval()(**b_inputs(held_out)).logits, 1.0).item()

    step = distillation_step_fn(teacher, temperature=2.0, alpha=1.0)
    before = kl_to_teacher()
    train(student, data, step, TrainConfig(max_steps=50, lr=3e-3, progress=False, device="cpu"))
    after = kl_to_teacher()
    assert math.isfinite(after) and after < 0.3 * before, (before, after)


def test_init_embeddings_by_projection_is_pca_of_the_teacher_embeddings():
    from sklearn.decomposition import PCA

    torch.manual_seed(0)
    teacher = BertModel(BertConfig(vocab_size=50, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64))
    student = BertModel(BertConfig(vocab_size=50, hidden_size=8, num_layers=1, num_heads=2, intermediate_size=16))
    P = init_embeddings_by_projection(student, teacher)
    assert P.shape == (32, 8)
    torch.testing.assert_close(P.T @ P, torch.eye(8), atol=1e-5, rtol=0)  # orthonormal directions
    W = teacher.embeddings.word_embeddings.weight.detach()
    got = student.embeddings.word_embeddings.weight.detach()
    torch.testing.assert_close(got, W @ P)
    # the same subspace as scikit-learn's PCA: equal explained variance, per component
    pca = PCA(n_components=8).fit(W.numpy())
    ours = ((got - got.mean(0)) ** 2).sum(0) / (W.shape[0] - 1)
    torch.testing.assert_close(ours.sort(descending=True).values, torch.tensor(pca.explained_variance_).float(),
                               atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(student.embeddings.position_embeddings.weight.detach(),
                               teacher.embeddings.position_embeddings.weight.detach() @ P)
    with pytest.raises(ValueError, match="must not be wider"):
        init_embeddings_by_projection(teacher, student)
