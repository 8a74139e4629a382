"""mlstep.exercises.modern (chapter 12): each check passes answers written independently of the
reference and names each typical mistake, written as a learner would write it. (The experiment
check is tested with the others in tests/test_experiment_exercises.py.)"""

import pytest
import torch

from mlstep.attention import rotate
from mlstep.exercises import check_rms_norm, check_rope


def run(check, fn, capsys):
    """Run a check; return (result, the one line it printed)."""
    result = check(fn)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1, lines
    return result, lines[0]


def turn(x, positions, theta, exponent=2.0, interleaved=False, sign=1.0):
    """RoPE with complex numbers: pair (a, b) is a + ib, multiplied by e^(i·angle)."""
    K = x.shape[-1]
    freq = theta ** (-exponent * torch.arange(K // 2, dtype=torch.float64) / K)
    angle = sign * positions.double()[:, None] * freq  # (T, K/2)
    a, b = (x[..., 0::2], x[..., 1::2]) if interleaved else x.chunk(2, dim=-1)
    z = torch.complex(a.double(), b.double()) * torch.polar(torch.ones_like(angle), angle)
    if interleaved:
        return torch.stack([z.real, z.imag], dim=-1).flatten(-2).to(x.dtype)
    return torch.cat([z.real, z.imag], dim=-1).to(x.dtype)


def rms(x, w, eps):
    return x * torch.rsqrt(x.square().mean(dim=-1, keepdim=True) + eps) * w


REFERENCES = [
    (check_rope, lambda q, k, v, p, t: (rotate(q, p, t), rotate(k, p, t), v)),
    (check_rope, lambda q, k, v, p, t: (turn(q, p, t), turn(k, p, t), v)),
    (check_rms_norm, rms),
    (check_rms_norm, lambda x, w, eps: torch.nn.functional.rms_norm(x, (x.shape[-1],), w, eps)),
]

WRONG = [
    (check_rope, lambda q, k, v, p, t: (turn(q, p, t), turn(k, p, t), turn(v, p, t)), "values are rotated too"),
    (check_rope, lambda q, k, v, p, t: (turn(q, p, t), k, v), "keys are not rotated"),
    (check_rope, lambda q, k, v, p, t: (turn(q, p, t, interleaved=True), turn(k, p, t, interleaved=True), v),
     "pairs are neighbours"),
    (check_rope, lambda q, k, v, p, t: (turn(q, p, t, exponent=1.0), turn(k, p, t, exponent=1.0), v),
     "frequency exponent is off"),
    (check_rope, lambda q, k, v, p, t: (turn(q, p, t, sign=-1.0), turn(k, p, t, sign=-1.0), v), "wrong way"),
    (check_rope, lambda q, k, v, p, t: (q, k, v), "positions are not used"),
    (check_rope, lambda q, k, v, p, t: torch.stack([turn(q, p, t), turn(k, p, t), v]), "return three tensors"),
    (check_rms_norm, lambda x, w, eps: torch.nn.functional.layer_norm(x, (x.shape[-1],), w, None, eps),
     "the mean is subtracted"),
    (check_rms_norm, lambda x, w, eps: x / (x.abs().mean(-1, keepdim=True) + eps) * w, "mean of |x|"),
    (check_rms_norm, lambda x, w, eps: x / (x.square().mean(-1, keepdim=True) + eps) * w, "square root is missing"),
    (check_rms_norm, lambda x, w, eps: x / x.square().mean(-1, keepdim=True).sqrt() * w, "eps is missing"),
    (check_rms_norm, lambda x, w, eps: x / (x.square().mean(-1, keepdim=True).sqrt() + eps) * w,
     "eps is outside the root"),
    (check_rms_norm, lambda x, w, eps: x * torch.rsqrt(x.square().mean(0, keepdim=True) + eps) * w,
     "wrong dimension"),
    (check_rms_norm, lambda x, w, eps: x * torch.rsqrt(x.square().mean(-1, keepdim=True) + eps), "gain is not applied"),
]


@pytest.mark.parametrize("check, fn", REFERENCES)
def test_reference_answers_pass(check, fn, capsys):
    result, line = run(check, fn, capsys)
    assert result and line.startswith("✅"), line


@pytest.mark.parametrize("check, fn, diagnosis", WRONG, ids=[w[2] for w in WRONG])
def test_each_typical_mistake_is_named(check, fn, diagnosis, capsys):
    result, line = run(check, fn, capsys)
    assert not result and line.startswith("❌") and diagnosis in line, line
