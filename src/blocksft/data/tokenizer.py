"""Character-level tokenizer for the embedded default, built with `tokenizers` and wrapped as a
Hugging Face ``PreTrainedTokenizerFast`` (so ``save_pretrained`` / ``from_pretrained`` work).

Vocabulary: the special tokens [PAD], [MASK], [EOS], [UNK] first, then every printable ASCII
character and newline, one id each. Unknown characters map to [UNK].
"""

from __future__ import annotations

import string
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = {"pad_token": "[PAD]", "mask_token": "[MASK]", "eos_token": "[EOS]", "unk_token": "[UNK]"}
CHARACTERS = "\n" + "".join(ch for ch in string.printable if ch.isprintable())


def build_char_tokenizer(characters: str = CHARACTERS) -> PreTrainedTokenizerFast:
    """A character-level fast tokenizer; ids are stable for a given ``characters`` string."""
    vocab: dict[str, int] = {}
    for token in [*SPECIAL_TOKENS.values(), *characters]:
        vocab.setdefault(token, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=SPECIAL_TOKENS["unk_token"]))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    backend.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, **SPECIAL_TOKENS)
    tokenizer.model_input_names = ["input_ids", "attention_mask"]
    return tokenizer


def load_saved_tokenizer(folder: str | Path) -> PreTrainedTokenizerFast:
    """A tokenizer of ours (char or BPE: a ``tokenizers`` backend) that ``save_pretrained`` wrote into ``folder``.
    Loaded as ``PreTrainedTokenizerFast`` whatever class name the file records: transformers 5 saves it as
    ``TokenizersBackend``, a name transformers 4 (pyproject's lower bound) does not know."""
    return PreTrainedTokenizerFast.from_pretrained(Path(folder).expanduser())
