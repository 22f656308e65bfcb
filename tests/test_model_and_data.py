"""Tiny model, char tokenizer, collation and the data module."""

from __future__ import annotations

import torch
from omegaconf import OmegaConf

from blocksft.data.collate import TrainCollator, left_pad
from blocksft.data.datamodule import DiffusionSFTDataModule
from blocksft.data.settings import LoaderSettings, RowSettings
from blocksft.data.sources import ArithmeticSource
from blocksft.data.tokenizer import build_char_tokenizer
from blocksft.models import build_model, load_exported

MODEL_CFG = OmegaConf.create(
    dict(
        kind="tiny",
        tokenizer="char",
        hidden_size=32,
        num_layers=2,
        num_heads=2,
        intermediate_size=64,
        max_position_embeddings=256,
        dropout=0.0,
    )
)


def test_tokenizer_round_trips_text_and_has_the_special_tokens(tmp_path):
    tokenizer = build_char_tokenizer()
    text = "Mia has 7 apples.\n7 + 5 = 12\n#### 12"
    ids = tokenizer(text, add_special_tokens=False).input_ids
    assert len(ids) == len(text) and tokenizer.decode(ids) == text
    assert {tokenizer.pad_token, tokenizer.mask_token, tokenizer.eos_token} == {"[PAD]", "[MASK]", "[EOS]"}
    tokenizer.save_pretrained(tmp_path)
    from transformers import AutoTokenizer

    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert reloaded(text, add_special_tokens=False).input_ids == ids
    assert reloaded.mask_token_id == tokenizer.mask_token_id


def test_model_save_pretrained_round_trip_and_head_split(tmp_path):
    tokenizer = build_char_tokenizer()
    model = build_model(MODEL_CFG, tokenizer).eval()
    ids = torch.randint(4, len(tokenizer), (2, 20))
    logits = model(ids).logits
    assert torch.allclose(model.project(model.encode(ids)), logits)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    reloaded, _ = load_exported(tmp_path)
    assert torch.equal(reloaded.eval()(ids).logits, logits)


def test_left_padding_does_not_change_what_a_row_sees():
    tokenizer = build_char_tokenizer()
    model = build_model(MODEL_CFG, tokenizer).eval()
    ids = torch.randint(4, len(tokenizer), (1, 12))
    padded, mask = left_pad([ids[0].tolist(), list(range(4, 20))], tokenizer.pad_token_id)
    alone = model(ids).logits[0]
    batched = model(padded, attention_mask=mask).logits[0, -12:]
    assert torch.allclose(alone, batched, atol=1e-5)


def test_train_collator_layout():
    collate = TrainCollator(pad_id=0, eos_id=2, response_len=8)
    batch = collate(
        [
            {"prompt_ids": [5, 6, 7], "answer_ids": [9, 9], "index": 0},
            {"prompt_ids": [5], "answer_ids": [9, 9, 9, 9], "index": 1},
        ]
    )
    assert batch["input_ids"].tolist() == [[5, 6, 7, 9, 9, 2, 2, 2, 2, 2, 2], [0, 0, 5, 9, 9, 9, 9, 2, 2, 2, 2]]
    assert batch["attention_mask"][1, :2].tolist() == [0, 0]
    assert batch["response_start"].tolist() == [3, 3]
    assert batch["answer_len"].tolist() == [3, 5]
    assert batch["loss_scope_len"].tolist() == [8, 8]
    visible = TrainCollator(pad_id=0, eos_id=2, response_len=8, tail_padding="visible")
    assert visible([{"prompt_ids": [5], "answer_ids": [9], "index": 0}])["loss_scope_len"].tolist() == [2]


def test_data_module_drops_rows_that_do_not_fit_and_counts_them():
    tokenizer = build_char_tokenizer()
    source = ArithmeticSource({"train": 200, "validation": 20}, seed=3, min_ops=1, max_ops=3)
    datamodule = DiffusionSFTDataModule(
        source,
        tokenizer,
        LoaderSettings(response_len=24, batch_size=8, eval_batch_size=8, eval_size=10),
        RowSettings(max_prompt_len=160),
    )
    datamodule.setup()
    kept = len(datamodule.train_set)
    assert 0 < kept < 200
    assert datamodule.dropped["train/answer_longer_than_response_len"] == 200 - kept
    assert all(len(ids) + 1 <= 24 for ids in datamodule.train_set["answer_ids"])
    assert len(datamodule.eval_set) <= 10
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["input_ids"].shape[0] == 8 and batch["index"].max() < kept
