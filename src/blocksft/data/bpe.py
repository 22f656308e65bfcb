"""A small BPE tokenizer trained on a corpus with Hugging Face ``tokenizers`` (``model.tokenizer=bpe``).

Same special tokens as the character tokenizer ([PAD] [MASK] [EOS] [UNK], ids 0-3), then every
printable ASCII character and newline (so any ASCII text encodes without [UNK]) and every other
character of the corpus, then the merges.
Pre-tokenisation keeps arithmetic legible to a small model: every digit is its own token (a leading
space may join it: ``" 1"``, ``"2"``), words keep their leading space (``" apples"``), runs of other
symbols and each whitespace run are separate pieces. Tokens are substrings of the text, so decoding
concatenates them (``decoders.Fuse``) and ``decode(encode(text)) == text`` for ASCII text.

Training is deterministic: the same texts in the same order give the same vocabulary.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from blocksft.data.tokenizer import CHARACTERS, SPECIAL_TOKENS

#: digits one by one (with an optional leading space), words with their leading space, other symbols, whitespace
PIECES = r" ?[0-9]| ?[A-Za-z]+| ?[^\sA-Za-z0-9]+|\s+"
MIN_VOCAB_SIZE = len(SPECIAL_TOKENS) + len(CHARACTERS)


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """A BPE tokenizer with at most ``vocab_size`` ids trained on ``texts`` (an iterable of strings)."""
    if vocab_size < MIN_VOCAB_SIZE:
        raise ValueError(f"model.bpe.vocab_size={vocab_size}: must be >= {MIN_VOCAB_SIZE} "
                         "(special tokens + printable ASCII)")
    backend = Tokenizer(models.BPE(unk_token=SPECIAL_TOKENS["unk_token"]))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(PIECES), behavior="isolated")
    backend.decoder = decoders.Fuse()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS.values()),
                                  initial_alphabet=list(CHARACTERS), show_progress=False)
    backend.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, **SPECIAL_TOKENS)
    tokenizer.model_input_names = ["input_ids", "attention_mask"]
    return tokenizer
