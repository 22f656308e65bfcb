"""A small BPE tokenizer trained on a corpus with Hugging Face ``tokenizers`` (``model.tokenizer=bpe``).

Same special tokens as the character tokenizer ([PAD] [MASK] [EOS] [UNK], ids 0-3), then every
printable ASCII character and newline (so any ASCII text encodes without [UNK]) and every other
character of the corpus, then the merges.
Pre-tokenisation keeps arithmetic legible to a small model. ``numbers="whole"`` (default): a run of
digits is one piece (with an optional leading space), so the merges make every frequent number one
token (``" 12"``) and a step ``7 + 5 = 12`` is a lookup over number tokens rather than digit-by-digit
carrying, which a few-million-parameter masked-diffusion model learns far more readily. Every integer
below ``WHOLE_NUMBERS`` is guaranteed one token with and without a leading space (the trainer also
counts a numeral line per training text, so a number at the start of a line, rare in a corpus, is not
left in digits); longer numbers fall back to shorter pieces. ``numbers="digits"``: every digit is its
own token (``" 1"``, ``"2"``). Words keep their leading space (``" apples"``), runs of other symbols and each whitespace
run are separate pieces. Tokens are substrings of the text, so decoding
concatenates them (``decoders.Fuse``) and ``decode(encode(text)) == text`` for ASCII text.

Training is deterministic: the same texts in the same order give the same vocabulary.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from blocksft.data.tokenizer import CHARACTERS, SPECIAL_TOKENS

#: pre-tokenisation per ``numbers`` mode: numbers (whole or digit by digit, with an optional leading space),
#: words with their leading space, other symbols, whitespace
PIECES = {
    "whole": r" ?[0-9]+| ?[A-Za-z]+| ?[^\sA-Za-z0-9]+|\s+",
    "digits": r" ?[0-9]| ?[A-Za-z]+| ?[^\sA-Za-z0-9]+|\s+",
}
WHOLE_NUMBERS = 100
MIN_VOCAB_SIZE = len(SPECIAL_TOKENS) + len(CHARACTERS)


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int, numbers: str = "whole") -> PreTrainedTokenizerFast:
    """A BPE tokenizer with at most ``vocab_size`` ids trained on ``texts`` (an iterable of strings);
    ``numbers``: ``whole`` or ``digits`` (see the module docstring)."""
    if vocab_size < MIN_VOCAB_SIZE:
        raise ValueError(
            f"model.bpe.vocab_size={vocab_size}: must be >= {MIN_VOCAB_SIZE} (special tokens + printable ASCII)"
        )
    if numbers not in PIECES:
        raise ValueError(f"model.bpe.numbers={numbers!r}: allowed {', '.join(PIECES)}")
    backend = Tokenizer(models.BPE(unk_token=SPECIAL_TOKENS["unk_token"]))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(PIECES[numbers]), behavior="isolated")
    backend.decoder = decoders.Fuse()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS.values()),
        initial_alphabet=list(CHARACTERS),
        show_progress=False,
    )
    texts = list(texts)
    if numbers == "whole":  # "0 1 ... 99" and "0\n1\n...\n99" once per text: both forms of each number merge first
        numerals = [" ".join(map(str, range(WHOLE_NUMBERS))), "\n".join(map(str, range(WHOLE_NUMBERS)))]
        texts = texts + numerals * len(texts)
    backend.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, **SPECIAL_TOKENS)
    tokenizer.model_input_names = ["input_ids", "attention_mask"]
    return tokenizer
