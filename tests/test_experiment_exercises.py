"""The experiment exercises' checks: the course's own measurement passes and reports the stated
range; each typical mistake fails with its diagnosis; the prediction is reported, never graded."""

import pytest
import torch

from mlstep.exercises import experiments as ex
from mlstep.exercises import modern
from mlstep.tools.runtime import set_threads

# (check, the experiment it runs, whether running it takes seconds: the course model is evaluated)
EXPERIMENTS = [
    (ex.check_top_key_weight, ex._TOP_KEY, False),
    (ex.check_attention_flop_share, ex._FLOP_SHARE, False),
    (ex.check_pieces_per_word, ex._PIECES, False),
    (ex.check_masked_accuracy_at, ex._MASKING, True),
    (ex.check_accuracy_on_label, ex._SWAPPED, True),
    (ex.check_linear_probe, ex._PROBE, True),
    (ex.check_soft_target_entropy, ex._ENTROPY, False),
    (modern.check_rope_match_at, modern._MATCH, False),
]
PARAMS = [pytest.param(check, exp, id=check.__name__, marks=[pytest.mark.slow] if slow else [])
          for check, exp, slow in EXPERIMENTS]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    previous = torch.get_num_threads()
    set_threads(1)  # tiny models: a second thread waiting for a busy core only slows them down
    yield
    torch.set_num_threads(previous)


@pytest.mark.parametrize("check, exp", PARAMS)
def test_the_reference_measurement_passes_and_states_the_range(check, exp, capsys):
    assert check(exp.reference, prediction=exp.stated[0])
    out = capsys.readouterr().out
    low, high = exp.stated
    assert "✅" in out and f"the stated range is {low:g} to {high:g}" in out and "was inside that range" in out
    assert check(exp.reference, prediction=high + 1)
    assert "was outside that range" in capsys.readouterr().out
    assert check(exp.reference)  # no prediction: still passes, and asks for one
    assert "Write your prediction down" in capsys.readouterr().out


@pytest.mark.parametrize("check, exp", PARAMS)
def test_each_typical_mistake_is_named(check, exp, capsys):
    for diagnosis, variant in exp.variants:
        assert not check(variant)
        assert diagnosis in capsys.readouterr().out


def test_wrong_return_type_and_exceptions_fail_clearly(capsys):
    assert not ex.check_top_key_weight(lambda *a: "0.25")
    assert "return one number" in capsys.readouterr().out
    assert not ex.check_top_key_weight(lambda *a: 1 / 0)
    assert "ZeroDivisionError" in capsys.readouterr().out


def test_a_measurement_off_by_more_than_the_tolerance_fails_with_both_numbers(capsys):
    assert not ex.check_soft_target_entropy(lambda logits, T: ex._soft_target_entropy(logits, T) + 0.01)
    out = capsys.readouterr().out
    assert "you measured" in out and "the reference measures" in out
