"""Compares pdserve-tokenize with Hugging Face on SmolLM2-135M-Instruct (and the stories260K
goldens through the tool).

The reference. transformers 5.24.0 cannot load a GGUF tokenizer without torch
(AutoTokenizer.from_pretrained(dir, gguf_file=...) imports transformers/integrations/gguf/reader.py,
which imports torch, and torch is not installed). So the reference is built with the `tokenizers`
library (0.23.3) from the GGUF's own vocabulary and merges (read with the `gguf` package), with
SmolLM2's pre-tokenizer from its tokenizer.json on the Hub -- Sequence[Digits(individual_digits),
ByteLevel(add_prefix_space=False, use_regex=True)] -- which is also what llama.cpp does for
tokenizer.ggml.pre = "smollm". Control tokens (token_type 3) are special added tokens.

We also run transformers' own GGUF conversion (convert_gguf_tokenizer, importable without torch)
on the same metadata. It does not know the "smollm" pre-tokenizer and falls back to GPT-2's
ByteLevel regex without the Digits step, so it only agrees where the text has no \\p{N}
character: we compare with it on those strings.

BOS: the GGUF says tokenizer.ggml.add_bos_token = false; transformers maps that key to
add_bos_token and adds no BOS, and llama.cpp adds none either. We follow the flag.

Chat prompts are rendered by jinja from the GGUF's tokenizer.chat_template with transformers'
render_jinja_template (what apply_chat_template uses) and encoded with special tokens parsed.
"""

import json
import os
import subprocess
import unicodedata
from pathlib import Path

import gguf
import pytest
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

ROOT = Path(os.environ.get("PDSERVE_ROOT", Path(__file__).resolve().parents[3]))
SHARED = Path(os.environ.get("PDSERVE_SHARED_DIR", ROOT.parent / "shared"))
MODEL = Path(os.environ.get("PDSERVE_MODELS_DIR", ROOT / "models")) / "SmolLM2-135M-Instruct.Q4_1.gguf"

TEXTS = [
    "Hello world",
    "Hello, world! How are you today?",
    "1234567890",
    "3.14159265358979 and 2,718,281,828 and 1e-10",
    "phone: +1 (555) 123-4567, year 2024",
    "a  b   c    d",
    "     leading spaces",
    "trailing spaces     ",
    "tab\tseparated\tvalues",
    "line one\nline two\n\nline four\n",
    "windows\r\nline\r\nendings",
    " \t \n mixed \n\t whitespace \t",
    "\n\n\n",
    "   ",
    "punctuation!!! ... ??? ;;; :: -- __ ** ## @@ $$ %%",
    "brackets (round) [square] {curly} <angle>",
    "quotes \"double\" 'single' `back`",
    "don't can't won't I'm you're we've they'll she'd it's",
    "DON'T I'M YOU'RE WE'VE THEY'LL SHE'D IT'S",
    "the cat's toys' owner''s 'quoted'",
    "caf\u00e9 na\u00efve r\u00e9sum\u00e9 \u00fcber co\u00f6perate Stra\u00dfe",
    "e\u0301 combining acute",
    "\u00c5ngstr\u00f6m \u00e6\u00f8\u00e5 \u0142\u00f3d\u017a \u010de\u0161tina",
    "\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440!",
    "\u0393\u03b5\u03b9\u03ac \u03c3\u03bf\u03c5 \u039a\u03cc\u03c3\u03bc\u03b5",
    "\u4f60\u597d\uff0c\u4e16\u754c\uff01\u6211\u662f\u4e00\u4e2a\u6a21\u578b\u3002",
    "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8\u3068\u30ab\u30bf\u30ab\u30ca",
    "\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8",
    "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645 \u0661\u0662\u0663",
    "\u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e \u0967\u0968\u0969",
    "emoji \U0001F600\U0001F389\U0001F44D\U0001F3FD \U0001F468\u200d\U0001F469\u200d\U0001F467",
    "flags \U0001F1FA\U0001F1F8 \U0001F1EF\U0001F1F5 and \u2764\ufe0f",
    "math: x\u00b2 + y\u00b2 = z\u00b2, \u00bd + \u00bc = \u00be, \u2160\u2161\u2162",
    "nbsp\u00a0here and\u3000ideographic\u2003em space",
    "zero\u200bwidth\u200cjoiners\u200d",
    "def f(x):\n    return x * 2  # double\n",
    "for (int i = 0; i < n; ++i) { sum += a[i]; }",
    "https://example.com/path?query=1&other=two#frag",
    "user@example.com, @handle #hashtag",
    "mixed: \u65e5\u672c\u8a9e and English 123 \U0001F600 caf\u00e9!",
    "The quick brown fox jumps over the lazy dog. " * 5,
    "a" * 100,
    "1" * 50,
    "x",
    "<|im_start|> not special unless parsed",
]

CONVERSATIONS = [
    [{"role": "user", "content": "Hi"}],
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Explain gravity."}],
    [{"role": "user", "content": "Write a haiku\nabout   spaces\tand tabs \U0001F600"}],
    [{"role": "system", "content": ""}, {"role": "user", "content": "caf\u00e9 12345"}],
]


def fail_without_model() -> None:
    assert MODEL.is_file(), f"{MODEL} is missing: run deploy/fetch-model.sh (the smollm2 fixture)"


@pytest.fixture(scope="module")
def tool() -> str:
    build = os.environ.get("PDSERVE_BUILD_DIR")
    assert build, "PDSERVE_BUILD_DIR is not set (ctest sets it)"
    path = os.path.join(build, "tests/common/tokenizer/pdserve-tokenize")
    assert os.access(path, os.X_OK), f"pdserve-tokenize not built: {path}"
    return path


def run_tool(tool: str, *args) -> list[int]:
    out = subprocess.run([tool, *args], capture_output=True, check=False)
    assert out.returncode == 0, out.stderr.decode(errors="replace")
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def metadata() -> dict:
    fail_without_model()
    reader = gguf.GGUFReader(str(MODEL))

    def field(key):
        f = reader.fields.get(key)
        if f is None:
            return None
        if f.types[0] == gguf.GGUFValueType.ARRAY:
            return [f.contents(i) for i in range(len(f.data))]
        return f.contents()

    keys = ["model", "pre", "tokens", "token_type", "merges", "bos_token_id", "eos_token_id",
            "add_bos_token"]
    meta = {k: field(f"tokenizer.ggml.{k}") for k in keys}
    meta["chat_template"] = field("tokenizer.chat_template")
    return meta


@pytest.fixture(scope="module")
def reference(metadata) -> Tokenizer:
    assert metadata["model"] == "gpt2" and metadata["pre"] == "smollm"
    vocab = {token: i for i, token in enumerate(metadata["tokens"])}
    merges = [tuple(m.split(" ")) for m in metadata["merges"]]
    tk = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tk.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tk.decoder = decoders.ByteLevel()
    tk.add_special_tokens([AddedToken(t, normalized=False, special=True)
                           for t, ty in zip(metadata["tokens"], metadata["token_type"]) if ty == 3])
    return tk


@pytest.fixture(scope="module")
def transformers_conversion(metadata) -> Tokenizer:
    from transformers.integrations.gguf import gguf_tokenizer_mapping as mapping
    tokenizer_dict = {
        "tokenizer_type": metadata["model"], "pre_tokenizer_type": metadata["pre"],
        "tokens": metadata["tokens"], "token_type": metadata["token_type"],
        "merges": metadata["merges"], "bos_token_id": metadata["bos_token_id"],
        "eos_token_id": metadata["eos_token_id"],
    }
    backend, _ = mapping.convert_gguf_tokenizer("llama", tokenizer_dict)
    return backend


def has_number(text: str) -> bool:
    return any(unicodedata.category(c).startswith("N") for c in text)


def test_bos_flag_is_false_and_transformers_follows_it(metadata):
    assert metadata["add_bos_token"] is False
    from transformers.integrations.gguf import gguf_tokenizer_mapping as mapping
    assert mapping.GGUF_TOKENIZER_MAPPING["tokenizer_config"]["ggml.add_bos_token"] == "add_bos_token"


@pytest.mark.parametrize("text", TEXTS)
def test_ids_match_reference(tool, reference, transformers_conversion, text):
    ours = run_tool(tool, "--model", str(MODEL), "--prompt", text)
    # Without --parse-special the text of special tokens is ordinary text.
    reference.encode_special_tokens = True
    try:
        expected = reference.encode(text, add_special_tokens=False).ids
    finally:
        reference.encode_special_tokens = False
    assert ours == expected, f"{text!r}: ours {ours} reference {expected}"
    if not has_number(text) and "<|" not in text:
        assert ours == transformers_conversion.encode(text, add_special_tokens=False).ids
    # Decoding the reference ids gives the text back, so ours do too.
    assert reference.decode(ours, skip_special_tokens=False) == text


@pytest.mark.parametrize("text", [
    "<|im_start|>user\nHi<|im_end|>\n",
    "before<|endoftext|>after <|im_end|><|im_end|> x",
    "<|im_start|><|im_start|>nested<repo_name>",
    "no specials here",
])
def test_special_tokens_match_reference(tool, reference, text):
    ours = run_tool(tool, "--model", str(MODEL), "--parse-special", "--prompt", text)
    assert ours == reference.encode(text, add_special_tokens=False).ids


@pytest.mark.parametrize("conversation", CONVERSATIONS)
def test_chat_prompt_matches_jinja(tool, reference, metadata, conversation):
    from transformers.utils.chat_template_utils import render_jinja_template
    rendered, _ = render_jinja_template(conversations=[conversation],
                                        chat_template=metadata["chat_template"],
                                        add_generation_prompt=True)
    expected = reference.encode(rendered[0], add_special_tokens=False).ids
    args = ["--model", str(MODEL)]
    for message in conversation:
        args += ["--chat-system" if message["role"] == "system" else "--chat-user", message["content"]]
    assert run_tool(tool, *args) == expected


def test_stories260k_goldens_through_the_tool(tool):
    goldens = [json.loads(line) for line in (SHARED / "golden/stories260K_greedy.jsonl").open()]
    assert goldens
    for golden in goldens:
        prompt = golden["prompt"]
        assert run_tool(tool, "--model", str(SHARED / "models/stories260K.bin"), "--tokenizer",
                        str(SHARED / "models/tok512.bin"), "--prompt", prompt) == golden["prompt_ids"]
        assert run_tool(tool, "--model", str(SHARED / "models/stories260K.gguf"),
                        "--prompt", prompt) == golden["prompt_ids"]
        assert run_tool(tool, "--model", str(SHARED / "models/stories260K.gguf"), "--no-bos",
                        "--prompt", prompt) == golden["prompt_ids"][1:]


def test_errors_exit_non_zero(tool):
    def fails(*args, message):
        out = subprocess.run([tool, *args], capture_output=True, check=False)
        assert out.returncode != 0 and out.stdout == b""
        assert message in out.stderr.decode(errors="replace"), out.stderr
    fail_without_model()
    fails("--model", str(MODEL), "--prompt", b"abc\xff", message="byte offset 3")
    fails("--model", str(SHARED / "models/stories260K.gguf"), "--chat-user", "hi",
          message="chat template not supported")
    fails("--model", "/nonexistent.gguf", "--prompt", "x", message="nonexistent")
    fails("--model", str(MODEL), message="--prompt")
    fails("--model", str(MODEL), "--prompt", "x", "--bogus", message="--bogus")
