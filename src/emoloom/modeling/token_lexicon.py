"""Which vocabulary tokens are lexicon words: the bridge from token distributions to VAD (L_vad) and to the
appraisal verifier's features (L_app)."""

from __future__ import annotations

import torch

from emoloom.core.text import FUNCTION_WORDS
from emoloom.data.lexicon import Lexicon


def lexical_tokens(tokenizer, lexicon: Lexicon) -> tuple[list[int], torch.Tensor]:
    """(token ids, their VAD (n, 3)) for tokens that decode to a whole lexicon word of 3+ letters (not a function
    word), with or without a leading space; word pieces that happen to spell a word count too, by design."""
    ids, vad = [], []
    for token_id in range(len(tokenizer)):
        word = tokenizer.decode([token_id]).strip().lower()
        if len(word) >= 3 and word.isalpha() and word.isascii() and word not in FUNCTION_WORDS:
            scores = lexicon.entries.get(word)
            if scores is not None:
                ids.append(token_id)
                vad.append(scores)
    return ids, torch.tensor(vad, dtype=torch.float32).reshape(-1, 3)
