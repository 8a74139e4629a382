"""mlstep.tasks.store and mlstep.tasks.course: one save/load for every mlstep model (round trips
equal to the saved model, tied weights kept, the committed files of earlier formats still load),
and the one command that rebuilds a course model."""

import json

import pytest
import torch

from mlstep.bert import BertConfig, BertForPreTraining
from mlstep.gpt import GPT, GPTConfig
from mlstep.tasks.course import (
    COURSE_MODELS,
    build_course_model,
    course_dir,
    load_course_model,
    main,
)
from mlstep.tasks.store import FORMAT, load_model, load_tokenizer, save_model
from mlstep.tokenizers.bpe import ByteLevelBPETokenizer
from mlstep.tokenizers.wordpiece import WordPieceTokenizer

TEXTS = ["anna cooked the soup .", "the soup was good .", "she was happy ."] * 4


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    wordpiece = WordPieceTokenizer.train(TEXTS, vocab_size=60, min_frequency=1)
    bpe = ByteLevelBPETokenizer.train(TEXTS, vocab_size=270)
    bert = BertForPreTraining(BertConfig(wordpiece.vocab_size, hidden_size=16, num_layers=1, num_heads=2,
                                         intermediate_size=32, max_position=16))
    gpt = GPT(GPTConfig(bpe.vocab_size, hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32,
                        max_position=16))
    return {"bert": (bert.eval(), wordpiece), "gpt": (gpt.eval(), bpe)}


@pytest.mark.parametrize("kind", ["bert", "gpt"])
def test_round_trip_gives_the_same_model_and_tokenizer(models, kind, tmp_path):
    model, tok = models[kind]
    save_model(tmp_path, model, tok, {"note": kind})
    again, tok2, meta = load_model(tmp_path)
    assert type(again) is type(model) and again.config == model.config and not again.training
    assert type(tok2) is type(tok) and tok2.vocab == tok.vocab and meta == {"note": kind}
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        torch.testing.assert_close(again(ids)[1], model(ids)[1], rtol=0, atol=0)
    for name, p in model.state_dict().items():
        assert torch.equal(again.state_dict()[name], p)
    emb = again.wte if kind == "gpt" else again.bert.embeddings.word_embeddings
    head = again.lm_head if kind == "gpt" else again.predictions.decoder
    assert head.weight is emb.weight  # still tied after loading
    assert torch.load(tmp_path / "model.pt", weights_only=True)["format"] == FORMAT


def test_model_without_tokenizer_and_bad_inputs(models, tmp_path):
    model, _ = models["bert"]
    save_model(tmp_path / "m", model)
    assert load_model(tmp_path / "m")[1] is None
    with pytest.raises(TypeError, match="BertForPreTraining or a GPT"):
        save_model(tmp_path / "x", model.bert)
    with pytest.raises(FileNotFoundError, match="python -m mlstep.tasks"):
        load_model(tmp_path / "missing")
    torch.save({"format": "something else"}, tmp_path / "m" / "model.pt")
    with pytest.raises(ValueError, match="not an mlstep model file"):
        load_model(tmp_path / "m")
    (tmp_path / "t.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="tokenizer format 'other'"):
        load_tokenizer(tmp_path / "t.json")


@pytest.mark.parametrize("name, fmt", [("bert", "mlstep-pretrained-v2"), ("gpt", "mlstep-gpt-v1"),
                                       ("realtext", "mlstep-pretrained-v2")])
def test_committed_course_models_load_from_their_earlier_formats(name, fmt):
    assert torch.load(course_dir(name) / "model.pt", weights_only=True)["format"] == fmt
    model, tok, meta = load_course_model(name, rebuild=False)
    assert tok.vocab_size == model.config.vocab_size and not model.training and meta["recipe"]


def test_unknown_course_model_and_real_text_without_data(tmp_path):
    with pytest.raises(ValueError, match="unknown course model 'roberta'"):
        load_course_model("roberta")
    with pytest.raises(FileNotFoundError, match="python -m mlstep.tasks realtext"):
        load_course_model("realtext", tmp_path)
    with pytest.raises(ValueError, match="--data DIR"):
        build_course_model("realtext", tmp_path, data=None)
    assert sorted(COURSE_MODELS) == ["bert", "gpt", "realtext"]


def test_one_command_rebuilds_a_course_model(tmp_path, capsys):
    main(["gpt", "--out", str(tmp_path), "--steps", "5", "--vocab-size", "300", "--block-size", "32"])
    model, tok, meta = load_model(tmp_path)
    assert meta["recipe"]["steps"] == 5 and model.config.max_position == 32 and isinstance(tok, ByteLevelBPETokenizer)
    assert f"saved to {tmp_path}" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["bert", "--whole-word", "maybe"])
