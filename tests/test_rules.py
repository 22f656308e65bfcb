"""Each rule in one place: the object that takes a value owns its rule (a masking strategy's constructor, the
decoder's argument check, the data module's settings, the batch plan), and ``validate_config`` builds that
object, so the line a bad config gets is the owner's own. What a strategy needs of the rest of the run it
declares as class attributes; validation reads them, never a class's name."""

from __future__ import annotations

import inspect

import pytest
import torch

from blocksft.config.validation import validate_config
from blocksft.data.batch_plan import plan_batches
from blocksft.data.datamodule import BatchDataModule, DiffusionSFTDataModule
from blocksft.data.documents import DocumentDataModule
from blocksft.data.settings import LoaderSettings, RowSettings
from blocksft.errors import ConfigError, InvalidValue
from blocksft.evaluation.decoding import generate
from blocksft.folders import is_export
from blocksft.masking import (
    AllBlocksMasking,
    BlockCausalMasking,
    BlockwiseMasking,
    ClassicalMasking,
    ComplementaryMasking,
    MatchedClassicalMasking,
    SequenceMasking,
    UnalignedBlockMasking,
)
from blocksft.models.init_from import export_kind
from blocksft.runs.compose import compose_config


def one_line(error: BaseException) -> str:
    message = str(error)
    assert "\n" not in message
    return message


# ------------------------------------------------------------------ the owner's line is the config's line
@pytest.mark.parametrize(
    "build, override",
    [
        (lambda: BlockwiseMasking(8, eps=0.0), "strategy=blockwise strategy.masking.eps=0.0"),
        (lambda: BlockwiseMasking(8, prefix_mask_rate=1.5), "strategy=blockwise strategy.masking.prefix_mask_rate=1.5"),
        (
            lambda: BlockwiseMasking(8, block_sampling="cyclic"),
            "strategy=blockwise strategy.masking.block_sampling=cyclic",
        ),
        (lambda: ClassicalMasking(p_min=0.6, p_max=0.4), "strategy.masking.p_min=0.6 strategy.masking.p_max=0.4"),
        (lambda: ClassicalMasking(p_max=1.2), "strategy.masking.p_max=1.2"),
        (
            lambda: MatchedClassicalMasking(8, tail_eos_in_loss=1.5),
            "strategy=classical_matched strategy.masking.tail_eos_in_loss=1.5",
        ),
        (lambda: AllBlocksMasking(8, rows="all"), "strategy=blockwise_all_blocks strategy.masking.rows=all"),
        (lambda: ComplementaryMasking(8, rows="all"), "strategy=blockwise_complementary strategy.masking.rows=all"),
        (lambda: BlockCausalMasking(0), "strategy=blockwise_block_causal block.size=0"),
    ],
)
def test_a_strategy_constructor_names_the_key_as_the_config_check_does(build, override):
    with pytest.raises(InvalidValue) as constructed:
        build()
    with pytest.raises(ConfigError) as validated:
        validate_config(compose_config(override.split()))
    assert one_line(constructed.value) == one_line(validated.value)
    assert one_line(validated.value).startswith(f"{constructed.value.key}=") and " is invalid: allowed " in str(
        validated.value
    )


@pytest.mark.parametrize(
    "override",
    [
        "decode.steps=31",
        "decode.block_length=7",
        "decode.temperature=-1",
        "decode.remasking=greedy",
        "decode.attention=causal",
        "decode=semi_ar_threshold decode.confidence_threshold=1.5",
        "decode=semi_ar_threshold decode.remasking=random",
    ],
)
def test_the_decoder_and_the_config_give_the_same_line(override):
    class Model(torch.nn.Module):
        def forward(self, x, **_):
            raise AssertionError("never called: the arguments are refused first")

    cfg = compose_config(override.split())
    decode = cfg.decode
    with pytest.raises(InvalidValue) as decoded:
        generate(
            Model(),
            torch.zeros(1, 3, dtype=torch.long),
            steps=decode.steps,
            gen_length=decode.gen_length,
            block_length=decode.block_length,
            temperature=decode.temperature,
            remasking=decode.remasking,
            mask_id=1,
            confidence_threshold=decode.confidence_threshold,
            attention=decode.attention,
        )
    with pytest.raises(ConfigError) as validated:
        validate_config(cfg)
    assert one_line(decoded.value) == one_line(validated.value)


@pytest.mark.parametrize(
    "build, override",
    [
        (
            lambda: LoaderSettings(response_len=32, batch_size=4, eval_batch_size=4, tail_padding="hidden"),
            "data.tail_padding=hidden",
        ),
        (lambda: LoaderSettings(response_len=32, batch_size=4, eval_batch_size=4, eval_size=0), "eval.size=0"),
        (lambda: RowSettings(max_prompt_len=8, answer_scheme="mmlu"), "data.answer_scheme=mmlu"),
        (lambda: RowSettings(max_prompt_len=8, chat_template="sometimes"), "data.chat_template=sometimes"),
        (
            lambda: RowSettings(max_prompt_len=8, prompt_template="no placeholder"),
            "data.prompt_template='no placeholder'",
        ),
        (lambda: plan_batches(12, 5, 1), "data.batch_size=12 data.micro_batch_size=5"),
    ],
)
def test_the_data_settings_and_the_batch_plan_give_the_config_line(build, override):
    with pytest.raises(InvalidValue) as built:
        build()
    with pytest.raises(ConfigError) as validated:
        validate_config(compose_config([override]) if "'" in override else compose_config(override.split()))
    assert one_line(built.value) == one_line(validated.value)


# ------------------------------------------------------------------ declared needs, not names
@pytest.mark.parametrize(
    "cls, attention, paired_rows, whole_sequence",
    [
        (ClassicalMasking, "full", False, False),
        (MatchedClassicalMasking, "full", False, False),
        (SequenceMasking, "full", False, True),
        (BlockwiseMasking, "full", False, False),
        (UnalignedBlockMasking, "full", False, False),
        (BlockCausalMasking, "block_causal", False, False),
        (AllBlocksMasking, "full", False, False),
        (ComplementaryMasking, "full", True, False),
    ],
)
def test_strategies_declare_what_they_need(cls, attention, paired_rows, whole_sequence):
    assert (cls.attention, cls.paired_rows, cls.whole_sequence) == (attention, paired_rows, whole_sequence)


class WholeDocuments(ClassicalMasking):
    """Named like nothing the validation knows; declares whole-sequence masking."""

    whole_sequence = True


class FutureCut(BlockwiseMasking):
    attention = "block_causal"


class Pairs(BlockwiseMasking):
    paired_rows = True
    rows = "batch"


def test_validation_reads_the_declarations_not_the_class_name():
    with pytest.raises(
        ConfigError,
        match=r"^strategy=classical is invalid with data.format=prompt_response: allowed "
        r"data.format=documents",
    ):
        validate_config(compose_config(["strategy.masking._target_=test_rules.WholeDocuments"]))
    validate_config(compose_config(["data=pretrain_corpus", "strategy.masking._target_=test_rules.WholeDocuments"]))
    with pytest.raises(
        ConfigError,
        match=r"^strategy.attention='full' is invalid: allowed block_causal for "
        r"strategy.masking._target_=test_rules.FutureCut$",
    ):
        validate_config(compose_config(["strategy=blockwise", "strategy.masking._target_=test_rules.FutureCut"]))
    validate_config(
        compose_config(
            ["strategy=blockwise", "strategy.masking._target_=test_rules.FutureCut", "+strategy.attention=block_causal"]
        )
    )
    with pytest.raises(ConfigError, match=r"^data.batch_size=15 is invalid: allowed a batch with an even number"):
        validate_config(
            compose_config(["strategy=blockwise", "strategy.masking._target_=test_rules.Pairs", "data.batch_size=15"])
        )
    validate_config(
        compose_config(["strategy=blockwise", "strategy.masking._target_=test_rules.Pairs", "data.batch_size=16"])
    )


def test_a_strategy_that_cannot_be_built_is_one_line_naming_its_target():
    with pytest.raises(ConfigError) as error:
        validate_config(compose_config(["+strategy.masking.surprise=1"]))
    assert one_line(error.value).startswith("strategy.masking._target_='blocksft.masking.ClassicalMasking' is invalid")
    assert "surprise" in str(error.value)


# ------------------------------------------------------------------ narrow seams
def test_the_data_modules_take_settings_objects_and_documents_no_prompt_settings():
    assert list(inspect.signature(BatchDataModule.__init__).parameters) == ["self", "source", "tokenizer", "loader"]
    assert list(inspect.signature(DiffusionSFTDataModule.__init__).parameters) == [
        "self",
        "source",
        "tokenizer",
        "loader",
        "rows",
    ]
    documents = inspect.signature(DocumentDataModule.__init__).parameters
    assert list(documents) == ["self", "source", "tokenizer", "loader", "text_field"]
    for name in ("chat_template", "prompt_template", "question_field", "answer_scheme", "max_prompt_len"):
        assert not hasattr(DocumentDataModule, name)


@pytest.mark.parametrize(
    "files, kind",
    [
        ({"config.json": '{"model_type": "blocksft_tiny"}'}, "tiny_export"),
        ({"config.json": '{"model_type": "bert"}'}, "hf_export"),
        ({"adapter_config.json": "{}"}, "peft_adapter"),
        ({"README.md": ""}, None),
    ],
)
def test_export_kind_rests_on_the_one_export_test(tmp_path, files, kind):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    assert export_kind(tmp_path) == kind and is_export(tmp_path) == (kind is not None)
