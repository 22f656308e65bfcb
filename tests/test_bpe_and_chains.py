"""The BPE tokenizer (model.tokenizer=bpe, trained on the corpus) and the chain-of-thought SFT candidate
(data=chains): answers that fill the 64-token response in several blocks of every grid size."""

from __future__ import annotations

import pytest
from hydra.utils import instantiate
from transformers import AutoTokenizer

from blocksft.config.validation import ConfigError, validate_config
from blocksft.data.bpe import WHOLE_NUMBERS, train_bpe_tokenizer
from blocksft.data.tokenizer import SPECIAL_TOKENS
from blocksft.models.tokenizers import build_run_tokenizer
from blocksft.runs.compose import compose_config

GRID = (4, 8, 16, 32)


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    cfg = compose_config(["experiment=pretrain_base", "data.source.sizes={train: 2000, validation: 10}"])
    return instantiate(cfg.data.source).load()["train"]


@pytest.fixture(scope="module")
def bpe(corpus):
    return train_bpe_tokenizer(corpus, 768)  # as experiment=pretrain_base: 190 merges go to whole numbers


def test_bpe_is_deterministic_keeps_special_ids_and_makes_numbers_one_token(corpus, bpe, tmp_path):
    assert train_bpe_tokenizer(corpus, 768).get_vocab() == bpe.get_vocab()
    assert [bpe.pad_token_id, bpe.mask_token_id, bpe.eos_token_id, bpe.unk_token_id] == [0, 1, 2, 3]
    assert [bpe.pad_token, bpe.mask_token, bpe.eos_token, bpe.unk_token] == list(SPECIAL_TOKENS.values())
    text = "Mia has 17 apples.\n17 + 25 = 42\n#### 42"
    ids = bpe(text, add_special_tokens=False)["input_ids"]
    assert bpe.decode(ids) == text and len(ids) < len(text) / 1.5
    pieces = bpe.convert_ids_to_tokens(ids)
    assert {"17", " 17", " 25", " 42"} <= set(pieces) and " apples" in pieces
    for number in range(WHOLE_NUMBERS):  # with and without a leading space (the start of an answer line)
        assert len(bpe(f"{number}", add_special_tokens=False)["input_ids"]) == 1
        assert len(bpe(f" {number}", add_special_tokens=False)["input_ids"]) == 1
    assert bpe.decode(bpe(" 12345", add_special_tokens=False)["input_ids"]) == " 12345"  # longer: several pieces
    bpe.save_pretrained(tmp_path)
    assert AutoTokenizer.from_pretrained(tmp_path)(text, add_special_tokens=False)["input_ids"] == ids


def test_bpe_digits_mode_gives_one_token_per_digit_and_a_bad_mode_names_the_key(corpus):
    digits = train_bpe_tokenizer(corpus[:500], 512, numbers="digits")
    pieces = digits.convert_ids_to_tokens(digits("17 + 25 = 42", add_special_tokens=False)["input_ids"])
    assert all(sum(ch.isdigit() for ch in piece) <= 1 for piece in pieces)
    with pytest.raises(ConfigError, match=r"^model.bpe.numbers='roman' is invalid: allowed whole, digits$"):
        validate_config(compose_config(["model.tokenizer=bpe", "model.bpe.numbers=roman"]))


def test_model_tokenizer_bpe_trains_on_the_runs_documents_and_bad_values_name_the_key(tmp_path):
    cfg = compose_config(["experiment=pretrain_base", "debug=smoke"])
    tokenizer = build_run_tokenizer(cfg)
    assert 100 < len(tokenizer) <= cfg.model.bpe.vocab_size and " apples" in tokenizer.get_vocab()
    with pytest.raises(
        ConfigError, match=r"^model.tokenizer='nowhere' is invalid: allowed auto, char, bpe or a folder"
    ):
        validate_config(compose_config(["model.tokenizer=nowhere"]))
    with pytest.raises(ConfigError, match=r"^model.bpe.vocab_size=50 is invalid"):
        validate_config(compose_config(["model.tokenizer=bpe", "model.bpe.vocab_size=50"]))
    tokenizer.save_pretrained(tmp_path)
    validate_config(compose_config([f"model.tokenizer={tmp_path}"]))  # a run from scratch with the base's ids


def test_chains_answers_fill_several_blocks_of_every_grid_size(bpe):
    cfg = compose_config(["data=chains", "data.source.sizes={train: 1000, validation: 10, test: 10}"])
    for size in GRID:
        validate_config(compose_config(["data=chains", "strategy=blockwise", f"block={size}"]))
        assert cfg.data.response_len // size >= 2
    rows = instantiate(cfg.data.source).load()["train"]
    lengths = [len(bpe(row["answer"], add_special_tokens=False)["input_ids"]) + 1 for row in rows]  # + EOS
    assert max(lengths) <= cfg.data.response_len  # no training row dropped with the base's tokenizer
    assert sum(length > 32 for length in lengths) / len(lengths) > 0.7  # block 32: two blocks carry the answer
    for row in rows[:50]:  # multi-step: every line after the first starts from the previous result
        lines = row["answer"].split("\n")
        assert len(lines) >= 5 and lines[-1].startswith("#### ")
        for previous, line in zip(lines[:-2], lines[1:-1]):
            assert line.split(" ")[0] == previous.split(" = ")[1]


def test_the_default_task_answers_reach_the_last_of_four_blocks(bpe):
    """The default (data=long_chains, block 16): the response holds at least four decode blocks and every answer
    (with its EOS) reaches the last one, and no training row is dropped with the base's tokenizer."""
    cfg = compose_config(["data.source.sizes={train: 1000, validation: 10, test: 10}"])
    assert cfg.data.name == "long_chains" and cfg.data.response_len >= 4 * cfg.block.size
    rows = instantiate(cfg.data.source).load()["train"]
    lengths = [len(bpe(row["answer"], add_special_tokens=False)["input_ids"]) + 1 for row in rows]  # + EOS
    last_block = cfg.data.response_len - cfg.block.size
    assert max(lengths) <= cfg.data.response_len and min(lengths) > last_block
    values = [int(n) for row in rows for n in row["answer"].replace("####", "").split() if n.isdigit()]
    assert max(values) > 20  # beyond the base's pretraining values: facts learned in SFT
