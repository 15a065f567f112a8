#!/usr/bin/env python3
"""Talk to a pdserve router's OpenAI-compatible HTTP API with the official `openai` package.

    pip install openai==3.51.0
    python3 examples/openai_client.py --base-url http://127.0.0.1:8000/v1 \\
        --prompt "What is the capital of France?"

Sends the prompt as a user message to /v1/chat/completions (--completion: as a plain prompt to
/v1/completions), streams the answer to stdout, and prints the token usage to stderr. The model
is the one the server lists (GET /v1/models) unless --model names one.
"""

import argparse
import os
import sys

import openai


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    parser.add_argument("--api-key", default=os.environ.get("PDSERVE_API_KEY", "none"),
                        help="the router's API key, if it has any (default $PDSERVE_API_KEY)")
    parser.add_argument("--model", help="default: the first model the server lists")
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--completion", action="store_true",
                        help="a plain-text completion instead of a chat")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--temperature", type=float, default=0.0)
    args = parser.parse_args()

    client = openai.OpenAI(base_url=args.base_url, api_key=args.api_key, max_retries=0)
    try:
        model = args.model or client.models.list().data[0].id
        common = dict(model=model, max_tokens=args.max_tokens, temperature=args.temperature,
                      stream=True, stream_options={"include_usage": True})
        if args.completion:
            stream = client.completions.create(prompt=args.prompt, **common)
        else:
            stream = client.chat.completions.create(
                messages=[{"role": "user", "content": args.prompt}], **common)
        usage, finish = None, None
        for chunk in stream:
            if chunk.choices:
                choice = chunk.choices[0]
                text = choice.text if args.completion else choice.delta.content
                print(text or "", end="", flush=True)
                finish = choice.finish_reason or finish
            if chunk.usage is not None:
                usage = chunk.usage
    except openai.APIError as error:
        print(f"\nerror: {error}", file=sys.stderr)
        return 1
    print()
    if usage is not None:
        print(f"[{finish}] model {model}: prompt {usage.prompt_tokens} tokens, generated "
              f"{usage.completion_tokens}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
