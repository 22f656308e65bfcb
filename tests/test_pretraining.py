"""Pretraining stage (experiment=pretrain_base): the corpus, documents as whole sequences, LLaDA's
pretraining loss, the held-out loss, and a smoke run whose export loads back."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from blocksft.config.validation import ConfigError, validate_config
from blocksft.data.corpus import ProceduralCorpusSource
from blocksft.data.documents import DocumentDataModule
from blocksft.data.settings import LoaderSettings
from blocksft.data.tokenizer import build_char_tokenizer
from blocksft.masking import SequenceMasking
from blocksft.models import load_exported
from blocksft.runs.compose import compose_config
from blocksft.training.objective import masked_diffusion_loss
from helpers.runs import run_in_process

CORPUS = dict(max_operand=10, min_ops=1, max_ops=4, max_result=30)


def test_corpus_is_seeded_disjoint_and_not_in_the_sft_layout():
    first = ProceduralCorpusSource({"train": 300, "validation": 30}, seed=5, **CORPUS).load()
    again = ProceduralCorpusSource({"train": 300, "validation": 30}, seed=5, **CORPUS).load()
    other = ProceduralCorpusSource({"train": 300, "validation": 30}, seed=6, **CORPUS).load()
    assert first == again and first["train"] != other["train"]
    assert not set(first["train"]) & set(first["validation"])
    documents = first["train"] + first["validation"]
    assert not any("####" in text for text in documents)  # the SFT answer marker never appears
    for marker in ("so that makes", "Problem: ", "Result: ", " -> ", "; "):  # every format is drawn
        assert any(marker in text for text in documents), marker
    assert all(len(text) <= 240 or "\n\n" not in text for text in documents)  # max_chars (one paragraph may exceed)


def test_facts_paragraphs_cover_every_fact_of_the_range_and_are_true():
    """The per-step skill of the chains: a left operand anywhere in [0, max_result] (a running value),
    not only a starting amount in [1, max_operand]."""
    source = ProceduralCorpusSource(
        {"train": 400}, seed=1, max_operand=5, max_result=20, formats={"facts": 1.0}, max_chars=400
    )
    paragraphs = [paragraph for text in source.load()["train"] for paragraph in text.split("\n\n")]
    facts = [fact for paragraph in paragraphs for fact in paragraph.rstrip(".").split("; ")]
    seen = set()
    for fact in facts:
        a, op, b, equals, c = fact.split(" ")
        a, b, c = int(a), int(b), int(c)
        assert equals == "=" and c == (a + b if op == "+" else a - b) and 0 <= c <= 20 and 1 <= b <= 5, fact
        seen.add((a, op, b))
    assert {a for a, _, _ in seen} == set(range(21)) and len(seen) == 180  # every fact of the range occurs


def test_documents_are_whole_sequences_and_long_ones_are_dropped():
    source = ProceduralCorpusSource({"train": 64, "validation": 8}, seed=0, max_chars=240, **CORPUS)
    datamodule = DocumentDataModule(
        source, build_char_tokenizer(), LoaderSettings(response_len=230, batch_size=4, eval_batch_size=4)
    )
    datamodule.setup()
    kept = len(datamodule.train_set)
    assert datamodule.dropped["train/document_longer_than_response_len"] == 64 - kept > 0
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["input_ids"].shape == (4, 230)
    assert batch["response_start"].tolist() == [0] * 4 and batch["loss_scope_len"].tolist() == [230] * 4
    eval_batch = next(iter(datamodule.test_dataloader()))  # held-out documents in order, training layout
    assert eval_batch["input_ids"].shape[1] == 230 and eval_batch["index"].tolist() == list(
        range(len(eval_batch["index"]))
    )


def test_sequence_masking_with_elbo_is_llada_pretraining_loss():
    """LLaDA (GUIDELINES pretraining): p_mask per sample, loss = sum(CE[masked] / p_mask) / (B * L)."""
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(4, 50, (3, 16), generator=generator)
    logits_all = torch.randn(3, 16, 50, generator=generator)
    masked = SequenceMasking(eps=1e-3, mask_id=1)(
        ids, torch.zeros(3, dtype=torch.long), torch.full((3,), 16), torch.Generator().manual_seed(1)
    )
    assert torch.equal(masked.eligible_mask, torch.ones(3, 16, dtype=torch.bool))  # the whole sequence
    assert torch.equal(masked.noisy_ids == 1, masked.loss_mask)
    rows, cols = masked.loss_mask.nonzero(as_tuple=True)
    ours = masked_diffusion_loss(
        logits_all[rows, cols], ids[rows, cols], rows, masked.mask_rate, masked.response_len, "elbo"
    )
    token_loss = F.cross_entropy(logits_all[masked.loss_mask], ids[masked.loss_mask], reduction="none")
    p_mask = masked.mask_rate[:, None].expand(3, 16)[masked.loss_mask]
    assert torch.allclose(ours, (token_loss / p_mask).sum() / (3 * 16))


def test_sequence_masking_refuses_rows_with_a_prompt_and_the_config_says_so():
    with pytest.raises(ValueError, match="no prompt"):
        SequenceMasking(mask_id=1)(
            torch.ones(1, 8, dtype=torch.long), torch.tensor([2]), torch.tensor([6]), torch.Generator()
        )
    with pytest.raises(ConfigError, match=r"^strategy=pretrain is invalid with data.format=prompt_response"):
        validate_config(compose_config(["strategy=pretrain"]))
    with pytest.raises(ConfigError, match=r"^data.format='pages' is invalid"):
        validate_config(compose_config(["data=pretrain_corpus", "data.format=pages"]))
    validate_config(compose_config(["experiment=pretrain_base"]))


def test_pretrain_base_smoke_writes_an_export_that_loads_back(tmp_path):
    # (debug=smoke sets the base's tokenizer)
    run_in_process(["experiment=pretrain_base", "debug=smoke", "model.tokenizer=bpe"], tmp_path)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["status"] == "completed" and results["strategy"] == "pretrain" and results["steps"] == 10
    assert results["accuracy"] is None and results["eval_loss"] > 0 and results["init_from"] is None
    assert results["config"]["objective"]["weighting"] == "elbo"
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    metrics = (tmp_path / "csv" / "metrics.csv").read_text()
    assert "train/loss" in metrics and "val/loss" in metrics
    model, tokenizer = load_exported(tmp_path / "export")
    assert type(model).__name__ == "TinyDiffusionLM" and model.config.vocab_size == len(tokenizer) > 100  # BPE
    assert tokenizer.mask_token == "[MASK]" and tokenizer.eos_token == "[EOS]"
    saved = json.loads((tmp_path / "export" / "blocksft_model.json").read_text())
    assert saved["tokenizer"] == "bpe" and saved["hidden_size"] == model.config.hidden_size


def test_corpus_can_mix_in_reasoning_gym_paragraphs():
    source = ProceduralCorpusSource(
        {"train": 30},
        seed=0,
        formats={"chain": 1.0, "reasoning_gym": 1.0},
        reasoning_gym_tasks=["chain_sum"],
        reasoning_gym_size=50,
        **CORPUS,
    )
    documents = source.load()["train"]
    assert any("Q: " in text and "\nA: " in text for text in documents)
    assert any("Result: " in text for text in documents)
    with pytest.raises(ValueError, match="reasoning_gym_tasks"):
        ProceduralCorpusSource({"train": 1}, formats={"reasoning_gym": 1.0})


def test_pretraining_resumes_from_its_last_checkpoint_with_the_same_bpe_ids(tmp_path):
    """A longer budget is another config (its own folder, blocksft.runs.identity): it continues from the
    first run's checkpoint through ``ckpt_path`` and retrains the same BPE vocabulary."""
    common = ["experiment=pretrain_base", "debug=smoke", "checkpoint.every_n_train_steps=3", "skip_completed=false"]
    run_in_process([*common, "budget.value=6"], tmp_path / "first")
    vocabulary = (tmp_path / "first" / "export" / "tokenizer.json").read_text()
    checkpoint = tmp_path / "first" / "checkpoints" / "last.ckpt"
    run_in_process([*common, "budget.value=9", f"ckpt_path={checkpoint}"], tmp_path / "longer")
    results = json.loads((tmp_path / "longer" / "results.json").read_text())
    assert results["steps"] == 9 and results["ckpt_path"] == str(checkpoint)
    assert (tmp_path / "longer" / "export" / "tokenizer.json").read_text() == vocabulary  # retrained BPE: same ids
