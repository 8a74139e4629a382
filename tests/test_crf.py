"""mlstep.crf against a brute-force enumeration of every tag sequence, and against pytorch-crf."""

import itertools

import pytest
import torch

from mlstep.bert import BertConfig
from mlstep.crf import CRF, BertCRFTagger, pack_words
from mlstep.tasks.labeled import TensorDataset, evaluate_tagger, finetune_config, fit
from mlstep.tools.runtime import set_threads


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    previous = torch.get_num_threads()
    set_threads(1)  # a tiny model: a second thread waiting for a busy core only slows it down
    yield
    torch.set_num_threads(previous)


def random_crf(num_tags: int, seed: int) -> CRF:
    crf = CRF(num_tags)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in crf.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
    return crf.double()


def case(batch=3, words=4, tags=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    emissions = torch.randn(batch, words, tags, generator=g, dtype=torch.float64)
    lengths = torch.tensor([words, 1, max(1, words - 2)])[:batch]
    mask = torch.arange(words) < lengths[:, None]
    gold = torch.randint(tags, (batch, words), generator=g)
    return emissions, mask, gold


def brute_force_score(crf: CRF, emissions, path):
    """score(y) written out term by term, for one sentence (emissions (T, C), path of length T)."""
    s = crf.start[path[0]] + crf.end[path[-1]]
    for t, tag in enumerate(path):
        s = s + emissions[t, tag]
        if t:
            s = s + crf.transitions[path[t - 1], tag]
    return s


def brute_force(crf: CRF, emissions, mask):
    """log Z and the best path of every sentence, by enumerating all C^T tag sequences."""
    log_z, best = [], []
    for b in range(emissions.shape[0]):
        length = int(mask[b].sum())
        paths = list(itertools.product(range(crf.num_tags), repeat=length))
        scores = torch.stack([brute_force_score(crf, emissions[b], p) for p in paths])
        log_z.append(scores.logsumexp(0))
        best.append(list(paths[int(scores.argmax())]))
    return torch.stack(log_z), best


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_forward_algorithm_and_viterbi_equal_brute_force(seed):
    crf = random_crf(3, seed)
    emissions, mask, gold = case(seed=seed)
    log_z, best = brute_force(crf, emissions, mask)
    assert torch.allclose(crf.log_partition(emissions, mask), log_z, atol=1e-10)
    assert crf.decode(emissions, mask) == best
    scores = torch.stack([brute_force_score(crf, emissions[b], gold[b, : int(mask[b].sum())].tolist())
                          for b in range(3)])
    assert torch.allclose(crf(emissions, gold, mask), (log_z - scores).mean(), atol=1e-10)


def test_probabilities_of_all_sequences_sum_to_one():
    crf = random_crf(2, 5)
    emissions, mask, _ = case(batch=1, words=5, tags=2, seed=5)
    total = sum(torch.exp(-crf(emissions, torch.tensor([p]), mask))
                for p in itertools.product(range(2), repeat=5))
    assert torch.isclose(total, torch.tensor(1.0, dtype=torch.float64))


def test_untrained_crf_decodes_like_the_per_token_argmax():
    emissions, mask, _ = case(seed=3)
    paths = CRF(3).double().decode(emissions, mask)
    argmax = emissions.argmax(-1)
    assert paths == [argmax[b, : int(mask[b].sum())].tolist() for b in range(3)]


def test_transitions_forbid_a_pair():
    crf = CRF(3).double()
    with torch.no_grad():
        crf.transitions[0, 2] = -1e4  # never 0 -> 2
    emissions = torch.tensor([[[5.0, 0, 0], [0, 0, 5.0]]], dtype=torch.float64)  # argmax says 0, 2
    assert crf.decode(emissions, torch.ones(1, 2, dtype=torch.bool)) != [[0, 2]]


def test_equals_pytorch_crf():
    torchcrf = pytest.importorskip("torchcrf", reason="pytorch-crf is not installed (the dev extra has it)")
    crf = random_crf(4, 7)
    ref = torchcrf.CRF(4, batch_first=True).double()
    with torch.no_grad():
        ref.start_transitions.copy_(crf.start)
        ref.end_transitions.copy_(crf.end)
        ref.transitions.copy_(crf.transitions)
    emissions, mask, gold = case(words=6, tags=4, seed=7)
    assert torch.allclose(crf(emissions, gold, mask), -ref(emissions, gold, mask, reduction="mean"), atol=1e-10)
    assert crf.decode(emissions, mask) == ref.decode(emissions, mask)
    # gradients too
    crf(emissions, gold, mask).backward()
    (-ref(emissions, gold, mask, reduction="mean")).backward()
    assert torch.allclose(crf.transitions.grad, ref.transitions.grad, atol=1e-10)


def test_pack_words_keeps_first_pieces_in_order():
    pieces = torch.arange(2 * 5, dtype=torch.float32).view(2, 5, 1)
    starts = torch.tensor([[False, True, False, True, True], [False, True, False, False, False]])
    words, mask = pack_words(pieces, starts)
    assert words.squeeze(-1).tolist() == [[1, 3, 4], [6, 0, 0]]
    assert mask.tolist() == [[True, True, True], [True, False, False]]


@pytest.mark.parametrize("bad, message", [
    (dict(mask=torch.tensor([[True, False, True]])), "left-aligned"),
    (dict(mask=torch.tensor([[1, 1, 0]])), "boolean"),
    (dict(emissions=torch.zeros(1, 3, 5)), "num_tags=3"),
    (dict(tags=torch.tensor([[0, 3, 0]])), "tags must be in"),
])
def test_bad_inputs_are_named(bad, message):
    args = dict(emissions=torch.zeros(1, 3, 3), tags=torch.zeros(1, 3, dtype=torch.long),
                mask=torch.tensor([[True, True, False]]))
    args.update(bad)
    with pytest.raises((ValueError, TypeError), match=message):
        CRF(3)(**args)


def test_bert_crf_tagger_trains_decodes_and_evaluates():
    """Alternating tags on random tokens: the loss falls, Viterbi decodes them, entity F1 is 1."""
    torch.manual_seed(0)
    config = BertConfig(20, hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32, max_position=16)
    ids = torch.randint(5, 20, (64, 8))
    ids[:, 0] = 2
    labels = torch.full((64, 8), -100)
    labels[:, 1:] = torch.tensor([1, 2, 1, 2, 1, 2, 1])
    data = TensorDataset({"input_ids": ids, "token_type_ids": torch.zeros_like(ids),
                          "attention_mask": torch.ones_like(ids), "labels": labels},
                         extra={"word_ids": [[None, *range(7)]] * 64, "tags": [["B-X", "I-X"] * 3 + ["B-X"]] * 64})
    model = BertCRFTagger(config, 3)
    before = model(**data.tensors).loss.item()
    history = fit(model, data, finetune_config(60, 3e-2))
    assert history.series("train.loss")[1][-1] < before / 4
    words = model.decode(ids[:4], None, None, labels[:4] != -100)
    assert words == [[1, 2, 1, 2, 1, 2, 1]] * 4
    assert evaluate_tagger(model, data, ["O", "B-X", "I-X"])["f1"] == 1.0
