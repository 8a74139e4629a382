"""mlstep.exercises: every check passes the reference and names each typical mistake."""

import json
import math

import pytest
import torch
from einops import rearrange

from mlstep import MultiHeadAttention, scaled_dot_product_attention
from mlstep.exercises import (
    CHECKS,
    MERGE_HEADS,
    REPORT_ENV,
    SPLIT_HEADS,
    check_attention,
    check_attention_weights,
    check_causal_mask,
    check_merge_heads,
    check_split_heads,
)


def run(check, fn, capsys):
    """Run a check; return (result, the one line it printed)."""
    result = check(fn)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1, lines
    return result, lines[0]


# --- learner functions: the reference answers and the typical wrong ones -------------------------

def _scores(q, k):
    return q @ k.transpose(-2, -1)


def weights_ok(q, k, mask=None):
    s = _scores(q, k) / math.sqrt(q.shape[-1])
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf"))
    return s.softmax(dim=-1)


def weights_ok_finite_fill(q, k, mask=None):  # -1e9 instead of -inf is fine too
    s = (q / math.sqrt(q.shape[-1])) @ k.transpose(-2, -1)
    if mask is not None:
        s = s.masked_fill(mask == 0, -1e9)
    return torch.exp(s - s.amax(-1, keepdim=True)) / torch.exp(s - s.amax(-1, keepdim=True)).sum(-1, keepdim=True)


def weights_unscaled(q, k, mask=None):
    s = _scores(q, k)
    return (s if mask is None else s.masked_fill(~mask, float("-inf"))).softmax(-1)


def weights_by_dk(q, k, mask=None):
    s = _scores(q, k) / q.shape[-1]
    return (s if mask is None else s.masked_fill(~mask, float("-inf"))).softmax(-1)


def weights_wrong_axis(q, k, mask=None):
    s = _scores(q, k) / math.sqrt(q.shape[-1])
    return (s if mask is None else s.masked_fill(~mask, float("-inf"))).softmax(-2)


def weights_mask_ignored(q, k, mask=None):
    return (_scores(q, k) / math.sqrt(q.shape[-1])).softmax(-1)


def weights_mask_after_softmax(q, k, mask=None):
    w = (_scores(q, k) / math.sqrt(q.shape[-1])).softmax(-1)
    return w if mask is None else w.masked_fill(~mask, 0.0)


def weights_mask_inverted(q, k, mask=None):
    s = _scores(q, k) / math.sqrt(q.shape[-1])
    return (s if mask is None else s.masked_fill(mask, float("-inf"))).softmax(-1)


def weights_mask_inverted_finite(q, k, mask=None):
    s = _scores(q, k) / math.sqrt(q.shape[-1])
    return (s if mask is None else s.masked_fill(mask, -1e9)).softmax(-1)


def weights_dot_T(q, k, mask=None):  # `.T` reverses every dimension of a batched tensor
    return (q @ k.T / math.sqrt(q.shape[-1])).softmax(-1)


def weights_in_place(q, k, mask=None):
    q /= math.sqrt(q.shape[-1])
    return weights_ok(q * math.sqrt(q.shape[-1]), k, mask)


def weights_float32(q, k, mask=None):
    return weights_ok(q.float(), k.float(), mask)


def not_implemented(*args, **kwargs):
    raise NotImplementedError("Exercise: write this part")


def attention_ok(q, k, v, mask=None):
    return weights_ok(q, k, mask) @ v


def attention_tuple(q, k, v, mask=None):
    return scaled_dot_product_attention(q, k, v, mask=mask)  # (out, weights) is accepted


def split_ok(x, num_heads):
    b, n, f = x.shape
    return x.view(b, n, num_heads, f // num_heads).transpose(1, 2)


def merge_ok(x):
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


def causal_ok(n):
    return torch.ones(n, n, dtype=torch.bool).tril()


REFERENCES = [
    (check_attention_weights, weights_ok),
    (check_attention_weights, weights_ok_finite_fill),
    (check_attention, attention_ok),
    (check_attention, attention_tuple),
    (check_causal_mask, causal_ok),
    (check_causal_mask, lambda n: torch.tril(torch.ones(n, n)).bool()),
    (check_split_heads, split_ok),
    (check_split_heads, lambda x, h: rearrange(x, "b n (h d) -> b h n d", h=h)),
    (check_merge_heads, merge_ok),
    (check_merge_heads, lambda x: rearrange(x, "b h n d -> b n (h d)")),
]


@pytest.mark.parametrize("check, fn", REFERENCES)
def test_reference_answers_pass(check, fn, capsys):
    result, line = run(check, fn, capsys)
    assert result is True
    assert line.startswith(f"✅ {check.__name__}: passed (") and "cases)" in line


WRONG = [
    # (check, learner function, words the message must contain)
    (check_attention_weights, weights_unscaled, ["unscaled", "√d_k"]),
    (check_attention_weights, weights_by_dk, ["d_k instead of √d_k"]),
    (check_attention_weights, weights_wrong_axis, ["wrong axis", "dim=-1"]),
    (check_attention_weights, weights_mask_ignored, ["mask ignored"]),
    (check_attention_weights, weights_mask_after_softmax, ["mask applied after the softmax"]),
    (check_attention_weights, weights_mask_inverted, ["mask polarity inverted"]),
    (check_attention_weights, weights_mask_inverted_finite, ["mask polarity inverted"]),
    (check_attention_weights, weights_dot_T, ["your function raised", "k.transpose(-2, -1)"]),
    (check_attention_weights, weights_in_place, ["in place", "`q`"]),
    (check_attention_weights, weights_float32, ["dtype", "float64", "float32"]),
    (check_attention_weights, lambda q, k, mask=None: weights_ok(q, k, mask).numpy(), ["not a tensor", "ndarray"]),
    (check_attention_weights, lambda q, k, mask=None: weights_ok(q, k, mask) * 1.01, ["rows don't sum to 1"]),
    (check_attention_weights, lambda q, k, mask=None: weights_ok(q, k, mask) + 1e-3 * torch.rand_like(q[..., :1]),
     ["rows don't sum to 1"]),
    (check_attention, lambda q, k, v, mask=None: weights_unscaled(q, k, mask) @ v, ["unscaled", "√d_k"]),
    (check_attention, lambda q, k, v, mask=None: weights_by_dk(q, k, mask) @ v, ["√d_k"]),
    (check_attention, lambda q, k, v, mask=None: weights_wrong_axis(q, k, mask) @ v, ["wrong axis"]),
    (check_attention, lambda q, k, v, mask=None: weights_mask_ignored(q, k, mask) @ v, ["mask ignored"]),
    (check_attention, lambda q, k, v, mask=None: weights_mask_after_softmax(q, k, mask) @ v, ["after the softmax"]),
    (check_attention, lambda q, k, v, mask=None: weights_mask_inverted(q, k, mask) @ v, ["mask polarity"]),
    (check_attention, lambda q, k, v, mask=None: weights_ok(q, k, mask), ["shape", "attention weights"]),
    (check_attention, lambda q, k, v, mask=None: attention_tuple(q, k, v, mask)[::-1], ["shape", "attention weights"]),
    (check_attention, lambda q, k, v, mask=None: weights_ok(q, k, mask) @ k, ["shape", "instead of v"]),
    (check_attention, lambda q, k, v, mask=None: (), ["empty tuple"]),
    (check_causal_mask, lambda n: torch.ones(n, n, dtype=torch.bool).triu(), ["upper triangle"]),
    (check_causal_mask, lambda n: torch.ones(n, n, dtype=torch.bool).tril(diagonal=-1), ["diagonal is False"]),
    (check_causal_mask, lambda n: torch.ones(n, n, dtype=torch.bool).triu(diagonal=1), ["polarity inverted"]),
    (check_causal_mask, lambda n: torch.ones(n, n).tril(), ["dtype", "torch.bool", "torch.float32"]),
    (check_causal_mask, lambda n: torch.ones(n, n, dtype=torch.long).tril(), ["dtype", "torch.bool"]),
    (check_causal_mask, lambda n: torch.ones(n, n + 1, dtype=torch.bool).tril(), ["shape", "(4, 4)", "(4, 5)"]),
    (check_causal_mask, lambda n: causal_ok(n).tolist(), ["not a tensor", "list"]),
    (check_split_heads, lambda x, h: x.view(x.shape[0], h, x.shape[1], -1), ["view(b, h, n, d)", "transpose"]),
    (check_split_heads, lambda x, h: rearrange(x, "b n (d h) -> b h n d", h=h), ["interleaved", "(d h)"]),
    (check_split_heads, lambda x, h: x.view(*x.shape[:2], h, -1), ["shape", "transpose(1, 2)"]),
    (check_merge_heads, lambda x: x.reshape(x.shape[0], x.shape[2], -1), ["wrong order", "transpose(1, 2)"]),
    (check_merge_heads, lambda x: rearrange(x, "b h n d -> b n (d h)"), ["wrong order", "(h d)"]),
    (check_merge_heads, lambda x: x.transpose(1, 2).view(x.shape[0], x.shape[2], -1), [".reshape"]),
    (check_merge_heads, lambda x: x.transpose(1, 2), ["shape", "(b, n, h*d)"]),
]


@pytest.mark.filterwarnings("ignore:The use of `x.T`:UserWarning")
@pytest.mark.parametrize("check, fn, words", WRONG, ids=[f"{c.__name__}-{i}" for i, (c, _, _) in enumerate(WRONG)])
def test_typical_mistakes_fail_with_a_specific_message(check, fn, words, capsys):
    result, line = run(check, fn, capsys)
    assert result is False
    assert line.startswith(f"❌ {check.__name__}: ")
    for word in words:
        assert word in line, (word, line)


@pytest.mark.parametrize("check", list(CHECKS.values()), ids=list(CHECKS))
def test_not_implemented_is_reported_not_raised(check, capsys):
    result, line = run(check, not_implemented, capsys)
    assert result is False
    assert "your function raised NotImplementedError: Exercise: write this part" in line


@pytest.mark.parametrize("check", list(CHECKS.values()), ids=list(CHECKS))
@pytest.mark.parametrize("bad", [None, 3, "abc"], ids=["None", "int", "str"])
def test_never_raises_on_garbage(check, bad, capsys):
    assert run(check, bad, capsys)[0] is False  # not a function
    assert run(check, lambda *a: bad, capsys)[0] is False  # returns garbage
    result, line = run(check, lambda *a: 1 / 0, capsys)
    assert result is False and "ZeroDivisionError" in line


def test_registry_lists_every_check():
    assert set(CHECKS) >= {"check_attention_weights", "check_attention", "check_causal_mask",
                           "check_split_heads", "check_merge_heads"}
    for name, check in CHECKS.items():
        assert check.__name__ == name and name.startswith("check_")


def test_checks_leave_the_global_rng_alone(capsys):
    torch.manual_seed(0)
    state = torch.random.get_rng_state()
    for check, fn in REFERENCES:
        check(fn)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_checks_are_deterministic(capsys):
    lines = []
    for _ in range(2):
        check_attention_weights(lambda q, k, mask=None: weights_ok(q, k, mask) * 1.5)
        lines.append(capsys.readouterr().out)
    assert lines[0] == lines[1]


def test_grade_report_gets_one_json_line_per_check(tmp_path, monkeypatch, capsys):
    report = tmp_path / "report.jsonl"
    monkeypatch.setenv(REPORT_ENV, str(report))
    assert check_causal_mask(causal_ok) is True
    assert check_split_heads(not_implemented) is False
    records = [json.loads(line) for line in report.read_text(encoding="utf-8").splitlines()]
    assert records == [
        {"check": "check_causal_mask", "passed": True, "message": "passed (3 cases)"},
        {"check": "check_split_heads", "passed": False, "message": records[1]["message"]},
    ]
    assert "NotImplementedError" in records[1]["message"]
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "✅ check_causal_mask: passed (3 cases)"
    assert out[1] == f"❌ check_split_heads: {records[1]['message']}"


def test_no_report_file_without_the_env_var(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(REPORT_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    check_causal_mask(causal_ok)
    assert list(tmp_path.iterdir()) == []


def test_head_layout_is_the_one_multi_head_attention_uses():
    """split -> SDPA -> merge -> out_proj with the checks' patterns reproduces MultiHeadAttention."""
    torch.manual_seed(0)
    mha = MultiHeadAttention(12, 3).eval()
    x = torch.randn(2, 5, 12)
    heads = [rearrange(proj(x), SPLIT_HEADS, h=3) for proj in (mha.q_proj, mha.k_proj, mha.v_proj)]
    out, _ = scaled_dot_product_attention(*heads)  # (b, h, n, d)
    manual = mha.out_proj(rearrange(out, MERGE_HEADS))  # (b, n, h*d)
    torch.testing.assert_close(manual, mha(x))
    # and the nn.MultiheadAttention layout, through from_torch
    ref = torch.nn.MultiheadAttention(12, 3, batch_first=True).eval()
    torch.testing.assert_close(MultiHeadAttention.from_torch(ref)(x), ref(x, x, x, need_weights=False)[0])
