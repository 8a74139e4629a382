"""mlstep.posttrain (chapter 11): the chat template and its mask, sequence log-probabilities, DPO and
GRPO against hand-computed values and TRL's formulas, rollouts, and the instruction data."""

import math

import pytest
import torch
import torch.nn.functional as F

from mlstep import GPT, GPTConfig
from mlstep.data.instruct import (
    INSTRUCTION_FAMILIES,
    SFT_FAMILIES,
    instruction_examples,
    score_answer,
)
from mlstep.posttrain import (
    END_OF_TURN,
    ROLE_TOKENS,
    GRPOConfig,
    add_chat_tokens,
    chat_reply,
    dpo_loss,
    dpo_step,
    grpo_advantages,
    grpo_loss,
    grpo_train,
    pad_chats,
    render_chat,
    rollout,
    sequence_logprobs,
    token_logprobs,
)
from mlstep.tokenizers.bpe import ByteLevelBPETokenizer

TEXTS = ["alice is a cook from red hills .", "one day , alice fried the stew .", "the stew was good ."] * 5


@pytest.fixture(scope="module")
def base():
    tokenizer = ByteLevelBPETokenizer.train(TEXTS, vocab_size=300, min_frequency=1)
    torch.manual_seed(0)
    model = GPT(GPTConfig(tokenizer.vocab_size, hidden_size=16, num_layers=1, num_heads=2,
                          intermediate_size=32, max_position=64))
    return model, tokenizer


@pytest.fixture(scope="module")
def chat(base):
    return add_chat_tokens(*base)


CONVERSATION = [{"role": "system", "content": "be brief ."},
                {"role": "user", "content": "who cooked ?"}, {"role": "assistant", "content": "alice"},
                {"role": "user", "content": "what ?"}, {"role": "assistant", "content": "the stew"}]


def test_add_chat_tokens_keeps_every_old_id_and_output(base, chat):
    (model, tokenizer), (grown, chat_tok) = base, chat
    V = tokenizer.vocab_size
    assert chat_tok.vocab_size == V + 4
    assert [chat_tok.id_to_token(i) for i in range(V)] == [tokenizer.id_to_token(i) for i in range(V)]
    for text in TEXTS[:3]:
        assert chat_tok.encode(text).ids == tokenizer.encode(text).ids
    ids = torch.tensor([tokenizer.encode(" ".join(TEXTS[:3])).ids])
    torch.testing.assert_close(grown(ids).logits[..., :V], model(ids).logits, rtol=0, atol=0)
    mean = model.wte.weight.mean(0)
    for token in (*ROLE_TOKENS.values(), END_OF_TURN):
        torch.testing.assert_close(grown.wte.weight[chat_tok.token_to_id(token)], mean)
    assert grown.lm_head.weight is grown.wte.weight  # still tied
    assert model.config.vocab_size == V  # the original is untouched


def test_render_chat_labels_only_the_assistant_turns_and_their_end(chat):
    _, tok = chat
    ids, labels = render_chat(CONVERSATION, tok)
    end, assistant = tok.token_to_id(END_OF_TURN), tok.token_to_id(ROLE_TOKENS["assistant"])
    expected_ids, expected_labels = [tok.eos_id], [-100]
    for m in CONVERSATION:
        content = tok.encode(" " + m["content"]).ids + [end]
        expected_ids += [tok.token_to_id(ROLE_TOKENS[m["role"]]), *content]
        expected_labels += [-100] + (content if m["role"] == "assistant" else [-100] * len(content))
    assert ids.tolist() == expected_ids and labels.tolist() == expected_labels
    # the turn boundary: the assistant role token carries no label, the first content token does
    first = ids.tolist().index(assistant)
    assert labels[first] == -100 and labels[first + 1] == ids[first + 1] and labels[first - 1] == -100
    assert tok.decode(ids[labels != -100].tolist(), skip_special_tokens=False) == \
        f" alice{END_OF_TURN} the stew{END_OF_TURN}"


def test_render_chat_generation_prompt_and_bad_input(chat, base):
    _, tok = chat
    ids, labels = render_chat(CONVERSATION[:2], tok, add_generation_prompt=True)
    assert ids[-1] == tok.token_to_id(ROLE_TOKENS["assistant"]) and (labels == -100).all()
    with pytest.raises(ValueError, match="role"):
        render_chat([{"role": "robot", "content": "hi"}], tok)
    with pytest.raises(ValueError, match="no assistant turn"):
        render_chat(CONVERSATION[:2], tok)
    with pytest.raises(ValueError, match="non-empty list"):
        render_chat([], tok)
    with pytest.raises(ValueError, match="add_chat_tokens"):
        render_chat(CONVERSATION, base[1])


def test_pad_chats_refuses_a_conversation_longer_than_the_model(chat):
    _, tok = chat
    rendered = [render_chat(CONVERSATION, tok), render_chat(CONVERSATION[:3], tok)]
    batch = pad_chats(rendered, tok.pad_id, 64)
    assert batch["input_ids"].shape == batch["labels"].shape == (2, len(rendered[0][0]))
    assert (batch["labels"][1, len(rendered[1][0]):] == -100).all()
    with pytest.raises(ValueError, match="max_position=8"):
        pad_chats(rendered, tok.pad_id, 8)


def test_sequence_logprobs_equal_a_direct_computation(chat):
    model, tok = chat
    batch = pad_chats([render_chat(CONVERSATION, tok), render_chat(CONVERSATION[:3], tok)], tok.pad_id, 64)
    got = sequence_logprobs(model, batch["input_ids"], batch["labels"])
    with torch.no_grad():
        logp = model(batch["input_ids"]).logits.log_softmax(-1)
    for b in range(2):
        direct = sum(logp[b, t - 1, batch["labels"][b, t]].item() for t in range(1, batch["labels"].shape[1])
                     if batch["labels"][b, t] != -100)
        assert got[b].item() == pytest.approx(direct, abs=1e-4)
    assert token_logprobs(model, batch["input_ids"], batch["labels"]).shape == batch["labels"].shape


def trl_dpo_sigmoid_loss(pc, pr, rc, rr, beta):
    """TRL's DPOTrainer.dpo_loss, loss_type="sigmoid", label_smoothing=0 (trl/trainer/dpo_trainer.py)."""
    logits = (pc - pr) - (rc - rr)
    losses = -F.logsigmoid(beta * logits)
    return losses.mean(), beta * (pc - rc).detach(), beta * (pr - rr).detach()


def test_dpo_loss_hand_computed_and_against_trl():
    pc, pr = torch.tensor([-1.0, -2.0]), torch.tensor([-3.0, -1.0])
    rc, rr = torch.tensor([-2.0, -2.0]), torch.tensor([-2.0, -2.0])
    loss, chosen, rejected = dpo_loss(pc, pr, rc, rr, beta=0.5)
    # row 0: 0.5·((−1+2) − (−3+2)) = 1.0; row 1: 0.5·((0) − (1)) = −0.5
    expected = (math.log1p(math.exp(-1.0)) + math.log1p(math.exp(0.5))) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert chosen.tolist() == [0.5, 0.0] and rejected.tolist() == [-0.5, 0.5]
    g = torch.Generator().manual_seed(0)
    args = [torch.randn(16, generator=g) * 5 for _ in range(4)]
    for beta in (0.05, 0.1, 1.0):
        for ours, theirs in zip(dpo_loss(*args, beta=beta), trl_dpo_sigmoid_loss(*args, beta), strict=True):
            torch.testing.assert_close(ours, theirs)


def test_dpo_loss_catches_the_typical_mistakes():
    pc, pr, rc, rr = torch.tensor([-1.0]), torch.tensor([-3.0]), torch.tensor([-0.5]), torch.tensor([-4.0])
    loss = dpo_loss(pc, pr, rc, rr, beta=0.1)[0].item()
    assert loss != pytest.approx(-F.logsigmoid(0.1 * (pc - pr)).item())  # without the reference
    assert loss != pytest.approx(-F.logsigmoid(-0.1 * ((pc - rc) - (pr - rr))).item())  # wrong sign
    assert loss != pytest.approx(-0.1 * F.logsigmoid((pc - rc) - (pr - rr)).item())  # β outside
    pc.requires_grad_(True)
    dpo_loss(pc, pr, rc, rr)[0].backward()
    assert pc.grad.item() < 0  # raising the chosen answer's log-prob lowers the loss
    with pytest.raises(ValueError, match="beta"):
        dpo_loss(pc, pr, rc, rr, beta=0)
    with pytest.raises(ValueError, match="finite"):
        dpo_loss(pc, pr, rc, torch.tensor([float("nan")]))
    with pytest.raises(ValueError, match="shape"):
        dpo_loss(pc, torch.zeros(2), rc, rr)


def test_dpo_step_trains_and_refuses_identical_answers(chat):
    model, tok = chat
    messages = CONVERSATION[1:2]
    rendered = [render_chat([*messages, {"role": "assistant", "content": a}], tok) for a in ("alice", "stew")]
    both = pad_chats(rendered, tok.pad_id, 64)
    batch = {"chosen_ids": both["input_ids"][:1], "chosen_labels": both["labels"][:1],
             "rejected_ids": both["input_ids"][1:], "rejected_labels": both["labels"][1:]}
    import copy
    policy = copy.deepcopy(model)
    step = dpo_step(copy.deepcopy(model), beta=0.1)
    loss, values = step(policy, batch)
    assert loss.item() == pytest.approx(math.log(2), abs=1e-5)  # policy == reference: σ(0) = 1/2
    assert values["reward_margin"] == pytest.approx(0.0, abs=1e-6)
    same = {**batch, "rejected_ids": batch["chosen_ids"], "rejected_labels": batch["chosen_labels"]}
    with pytest.raises(ValueError, match="identical"):
        step(policy, same)


def trl_grpo_advantages(rewards, G):
    """TRL's GRPOTrainer: rewards minus the group mean, over the group std (torch.std) + 1e-4."""
    mean = rewards.view(-1, G).mean(1).repeat_interleave(G)
    std = rewards.view(-1, G).std(1).repeat_interleave(G)
    return (rewards - mean) / (std + 1e-4)


def test_grpo_advantages_hand_computed_against_trl_and_equal_groups():
    r = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.5, 0.5, 0.5, 0.5])
    adv = grpo_advantages(r, 4)
    s = torch.tensor([1.0, 0.0, 0.0, 1.0]).std().item()  # unbiased: √(1/3)
    assert adv[:4].tolist() == pytest.approx([0.5 / (s + 1e-4), -0.5 / (s + 1e-4)] * 1 + [-0.5 / (s + 1e-4), 0.5 / (s + 1e-4)])
    assert adv[4:].tolist() == [0.0] * 4  # all equal: nothing to learn
    g = torch.Generator().manual_seed(0)
    r = torch.rand(24, generator=g)
    torch.testing.assert_close(grpo_advantages(r, 6), trl_grpo_advantages(r, 6))
    with pytest.raises(ValueError, match="whole number of groups"):
        grpo_advantages(torch.zeros(10), 4)
    with pytest.raises(ValueError, match="finite"):
        grpo_advantages(torch.tensor([1.0, float("inf")]), 2)


def test_grpo_loss_on_policy_gradient_clipping_and_kl():
    config = GRPOConfig(group_size=2, clip=0.2)
    labels = torch.tensor([[-100, 5, 6, -100], [-100, 7, -100, -100]])  # answers: 2 tokens, 1 token
    logps = torch.tensor([[-1.0, -2.0, 0.0, 0.0], [-0.5, 0.0, 0.0, 0.0]], requires_grad=True)
    A = torch.tensor([1.0, -1.0])
    loss = grpo_loss(logps, logps.detach(), A, labels, config)
    # on-policy the ratio is 1: the value is −mean(A) = 0 here, the gradient −A / (tokens · answers)
    assert loss.item() == pytest.approx(0.0, abs=1e-7)
    loss.backward()
    assert logps.grad[0, :2].tolist() == pytest.approx([-0.25, -0.25]) and logps.grad[1, 0].item() == pytest.approx(0.5)
    assert logps.grad[0, 2:].abs().sum() == 0  # no gradient outside the answers
    # a ratio above 1 + ε with a positive advantage is clipped: no gradient
    new = torch.tensor([[0.0, 0.0, 0.0, 0.0]], requires_grad=True)
    old = torch.tensor([[-1.0, -1.0, 0.0, 0.0]])
    grpo_loss(new, old, torch.tensor([1.0]), labels[:1], config).backward()
    assert new.grad.abs().sum() == 0
    # the KL penalty: 0 at the reference, positive away from it; required when beta > 0
    kl = GRPOConfig(group_size=2, beta=1.0)
    zero_a = torch.zeros(2)
    assert grpo_loss(logps, logps.detach(), zero_a, labels, kl, logps.detach()).item() == pytest.approx(0.0)
    assert grpo_loss(logps, logps.detach(), zero_a, labels, kl, logps.detach() - 1).item() > 0
    with pytest.raises(ValueError, match="reference_logps"):
        grpo_loss(logps, logps.detach(), zero_a, labels, kl)


def test_rollout_groups_and_labels_only_the_answer(chat):
    model, tok = chat
    end = tok.token_to_id(END_OF_TURN)
    prompts = [render_chat(CONVERSATION[:2], tok, add_generation_prompt=True)[0].tolist(),
               render_chat(CONVERSATION[3:4], tok, add_generation_prompt=True)[0].tolist()]
    config = GRPOConfig(group_size=3, max_new_tokens=5)
    batch = rollout(model, prompts, config, end, tok.pad_id, generator=torch.Generator().manual_seed(0))
    B, T = batch["input_ids"].shape
    assert B == 6 and T <= batch["start"] + 5
    start = batch["start"]
    assert (batch["labels"][:, :start] == -100).all()
    for row, lab in zip(batch["input_ids"], batch["labels"]):
        new = row[start:].tolist()
        n = new.index(end) + 1 if end in new else len(new)
        assert lab[start:start + n].tolist() == new[:n] and (lab[start + n:] == -100).all()
    assert batch["attention_mask"].shape == (B, T)


def first_token_reward(target):
    """1 for each answer whose first token is ``target``, 0 otherwise: a verifiable reward."""
    def reward(indices, batch):
        return (batch["input_ids"][:, batch["start"]] == target).float()  # (B·G,)
    return reward


def tiny_policy():
    torch.manual_seed(0)
    return GPT(GPTConfig(12, hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32, max_position=16))


@pytest.mark.parametrize("advantage", ["group", "filter"])
def test_grpo_train_raises_the_reward_of_a_verifiable_answer(advantage):
    prompts = [[1, 2], [3], [4, 5, 6], [7]]
    config = GRPOConfig(steps=40, lr=1e-2, prompts_per_step=4, group_size=8, max_new_tokens=2, advantage=advantage)
    means = grpo_train(tiny_policy(), prompts, first_token_reward(5), config, eos_id=0, pad_id=0, seed=0)
    assert len(means) == 40 and all(0.0 <= m <= 1.0 for m in means)
    first, last = sum(means[:5]) / 5, sum(means[-5:]) / 5
    assert first < 0.3 and last > first + 0.4, (first, last)


def test_grpo_train_refuses_bad_input():
    prompts, config = [[1, 2], [3]], GRPOConfig(steps=1, prompts_per_step=2, group_size=2, max_new_tokens=2)
    run = dict(eos_id=0, pad_id=0)
    with pytest.raises(ValueError, match="prompts_per_step=3 but only 2 prompts"):
        grpo_train(tiny_policy(), prompts, first_token_reward(5), GRPOConfig(prompts_per_step=3), **run)
    with pytest.raises(ValueError, match="reward_fn's rewards must have shape \\(4,\\)"):
        grpo_train(tiny_policy(), prompts, lambda i, b: torch.zeros(len(i)), config, **run)  # one per prompt
    with pytest.raises(ValueError, match="reward_fn's rewards must be finite"):
        grpo_train(tiny_policy(), prompts, lambda i, b: torch.full((4,), float("nan")), config, **run)
    with pytest.raises(TypeError, match="reward_fn's rewards must be a torch.Tensor"):
        grpo_train(tiny_policy(), prompts, lambda i, b: [1.0] * 4, config, **run)


def test_chat_reply_stops_at_the_end_of_turn(chat):
    model, tok = chat
    replies = chat_reply(model, tok, [CONVERSATION[:2]], max_new_tokens=4)
    assert len(replies) == 1 and END_OF_TURN not in replies[0]


def test_instruction_examples_have_checkable_answers():
    for family in INSTRUCTION_FAMILIES:
        examples = instruction_examples(family, 30, "validation")
        assert examples == instruction_examples(family, 30, "validation")  # seeded
        for e in examples:
            assert e["messages"][1]["content"] == e["answer"] and score_answer(e, f" {e['answer']} ") == 1.0
            if family in ("who", "where", "companion"):
                assert f" {e['answer']} " in f" {e['context']} "
        if family != "companion":
            seen = {e["instruction"] for e in examples}
            held = {e["instruction"] for e in instruction_examples(family, 30, "validation", phrasings="heldout")}
            assert seen <= set(INSTRUCTION_FAMILIES[family][:4]) and held <= set(INSTRUCTION_FAMILIES[family][4:])
    assert "companion" not in SFT_FAMILIES
    train = {e["context"] for e in instruction_examples("who", 50, "train")}
    assert not train & {e["context"] for e in instruction_examples("who", 50, "test")}
    negated = instruction_examples("polarity", 20, "test", negated=True)
    assert all(" not " in e["context"] for e in negated) and {e["answer"] for e in negated} == {"good", "bad"}
    with pytest.raises(ValueError, match="polarity"):
        instruction_examples("who", 5, negated=True)
    with pytest.raises(ValueError, match="family"):
        instruction_examples("why", 5)
    assert score_answer(examples[0], "not " + examples[0]["answer"]) == 0.0
