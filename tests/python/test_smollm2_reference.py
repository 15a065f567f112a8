"""pdserve-logits on SmolLM2-135M-Instruct (Q4_1, tied Q8_0 embedding, byte-level BPE) against
Hugging Face's tokenizer and the numpy reference.

For each prompt our tool tokenizes the text itself (--prompt, with --chat for the chat form);
its ids must equal what a Hugging Face user gets from the same GGUF file:
AutoTokenizer.from_pretrained(folder, gguf_file=name), then encode(text) for plain text, and
encode(apply_chat_template([user], add_generation_prompt=True, tokenize=False)) for chat. For
this file that means no BOS before plain text, although the file says add_bos_token = true
(transformers' byte-level tokenizer does not add one), and none added before the chat text,
which begins with the template's own <|im_start|>. Then, on those ids, the engine's logits must
be within 0.25 of the reference's at every position, and its argmax the same wherever the
reference's top two are more than 0.5 apart.

The model is fetched by deploy/fetch-model.sh (ctest's `smollm2` fixture); its absence fails.
"""

import numpy as np
import pytest

import pdserve_testlib as lib
import reference_llama as ref

MAX_ABS_DIFF = 0.25
MIN_TOP2_GAP = 0.5

# (id, form, text): digits, punctuation and accented letters, 30 to 43 tokens each (30 of the
# chat form's 43 are the template's: its default system message and the turn markers).
PROMPTS = [
    ("plain_prices", "plain",
     "The café on 5th Avenue opened in 1998; its crème brûlée costs $4.50 (tax incl.)!"),
    ("plain_french", "plain",
     "Zoë a demandé : « Où est la gare ? » — 3 trains partent à 10h45."),
    ("chat_arith", "chat", "12×7=? Réponds vite!"),
]
KERNELS = [("scalar", 1), ("auto", 2)]  # (--kernels, --threads)


@pytest.fixture(scope="module")
def model_path():
    return lib.fetch_smollm2()


@pytest.fixture(scope="module")
def hf_tokenizer(model_path):
    return lib.hf_tokenizer_from_gguf(model_path)


@pytest.fixture(scope="module")
def reference_model(model_path):
    return ref.load_gguf_cached(model_path)


_REFERENCE_LOGITS = {}  # prompt id -> (ids, logits): one numpy forward pass per prompt


def _hf_ids(tokenizer, form: str, text: str) -> list[int]:
    if form == "chat":
        text = tokenizer.apply_chat_template([{"role": "user", "content": text}],
                                             add_generation_prompt=True, tokenize=False)
    return tokenizer.encode(text)


def _reference(reference_model, hf_tokenizer, prompt_id, form, text):
    if prompt_id not in _REFERENCE_LOGITS:
        ids = _hf_ids(hf_tokenizer, form, text)
        _REFERENCE_LOGITS[prompt_id] = (ids, ref.forward(reference_model, ids))
    return _REFERENCE_LOGITS[prompt_id]


def test_hf_tokenizer_bos_convention(hf_tokenizer):
    """What the prompts below rely on: no BOS for plain text; the chat text starts the turn."""
    assert hf_tokenizer.convert_ids_to_tokens([0, 1, 2]) == ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    assert hf_tokenizer.encode("Hello, world!") == [19556, 28, 905, 17]
    chat = _hf_ids(hf_tokenizer, "chat", "Hi")
    assert chat[0] == 1 and chat[1] != 1  # the template's <|im_start|>, not a doubled BOS
    assert chat[-4:] == [1, 520, 9531, 198]  # "<|im_start|>assistant\n"


@pytest.mark.parametrize("kernels,threads", KERNELS)
@pytest.mark.parametrize("prompt_id,form,text", PROMPTS, ids=[p[0] for p in PROMPTS])
def test_engine_matches_reference(model_path, hf_tokenizer, reference_model, tmp_path,
                                  prompt_id, form, text, kernels, threads):
    ids, expected = _reference(reference_model, hf_tokenizer, prompt_id, form, text)
    assert len(ids) <= 64, f"{prompt_id}: {len(ids)} tokens; keep prompts short"
    source = {"prompt": text} if form == "plain" else {"chat_user": text}
    got_ids, got = lib.run_logits(tmp_path, model_path, kernels=kernels, threads=threads, **source)
    assert got_ids.tolist() == ids, (
        f"{prompt_id}: our ids differ from Hugging Face's\n"
        f"  ours: {hf_tokenizer.convert_ids_to_tokens(got_ids.tolist())}\n"
        f"  HF:   {hf_tokenizer.convert_ids_to_tokens(ids)}")

    result = lib.compare_logits(expected, got, MIN_TOP2_GAP)
    print(f"{prompt_id} --kernels {kernels}: {len(ids)} tokens, max |logit diff| "
          f"{result['max_abs_diff']:.4f} (position {result['worst_position']}), argmax checked at "
          f"{result['n_confident']} positions")
    assert result["max_abs_diff"] <= MAX_ABS_DIFF, result
    assert not result["argmax_mismatches"], result
