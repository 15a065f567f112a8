"""What bench/load asks for, whatever the protocol: prompts of words from a fixed list (one word ~
one token) and output lengths, drawn from a seeded random.Random so that the same seed gives the
same requests over gRPC and over the OpenAI protocol, to pdserve and to another server alike. Each
prompt is drawn word by word, so no two share more than a few words of prefix (a prefix cache
saves next to nothing).
"""

from __future__ import annotations

import random

WORDS = ("the a little girl named Lily went to park and saw big red ball she was very happy "
         "her mom said play with friend dog cat tree sun day time one once upon there lived "
         "boy who liked run jump sing story about bird fly sky blue green house garden flower "
         "water river small kind old new good nice warm cold rain snow home friends together "
         "learned shared found made looked smiled wanted asked helped").split()


def random_prompt(rng: random.Random, prompt_tokens: tuple, output_tokens: tuple) -> tuple:
    """(prompt text of [lo, hi] words, max_tokens in [lo, hi])."""
    prompt = " ".join(rng.choice(WORDS) for _ in range(rng.randint(*prompt_tokens)))
    return prompt, rng.randint(*output_tokens)
