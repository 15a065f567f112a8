#!/usr/bin/env python3
"""Talk to a pdserve router from Python with plain grpcio.

    pip install grpcio==1.76.0 grpcio-tools==1.76.0
    python3 examples/python_client.py --router 127.0.0.1:50051 --prompt "Tell me a story" --chat

The gRPC stubs are generated from proto/*.proto into a temporary directory when the script
starts, so the example always matches the checkout's wire contract. The generated text streams to
stdout; TTFT, TPOT and the token counts go to stderr.
"""

import argparse
import importlib
import pathlib
import sys
import tempfile

import grpc
from grpc_tools import protoc

PROTO_DIR = pathlib.Path(__file__).resolve().parent.parent / "proto"


def load_stubs(out_dir):
    """Compiles proto/*.proto with grpc_tools.protoc and imports the router's modules."""
    protos = sorted(str(p) for p in PROTO_DIR.glob("*.proto"))
    if protoc.main(["protoc", f"-I{PROTO_DIR}", f"--python_out={out_dir}",
                    f"--grpc_python_out={out_dir}", *protos]) != 0:
        sys.exit(f"could not compile {PROTO_DIR}/*.proto")
    sys.path.insert(0, out_dir)
    return (importlib.import_module("router_pb2"), importlib.import_module("router_pb2_grpc"),
            importlib.import_module("common_pb2"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--router", default="127.0.0.1:50051")
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--chat", action="store_true", help="send the prompt as a user message")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as stubs_dir:
        router_pb2, router_pb2_grpc, common_pb2 = load_stubs(stubs_dir)

        request = router_pb2.GenerateRequest(
            max_tokens=args.max_tokens,
            sampling=common_pb2.SamplingOptions(temperature=args.temperature, seed=args.seed))
        if args.chat:
            request.chat.messages.add(role="user", content=args.prompt)
        else:
            request.text = args.prompt

        with grpc.insecure_channel(args.router) as channel:
            stub = router_pb2_grpc.RouterStub(channel)
            final = None
            try:
                for response in stub.Generate(request, timeout=300):
                    if response.HasField("chunk"):
                        print(response.chunk.text, end="", flush=True)
                    else:
                        final = response.final
            except grpc.RpcError as error:
                print(f"\nerror: {error.code().name}: {error.details()}", file=sys.stderr)
                return 1

    if final is None:
        print("\nerror: the stream ended without its final message", file=sys.stderr)
        return 1
    timing = final.timing
    print(f"\n[{final.finish_reason}] prompt {final.usage.prompt_tokens} tokens, "
          f"generated {final.usage.completion_tokens}; TTFT {timing.ttft_seconds * 1e3:.1f} ms, "
          f"TPOT {timing.tpot_seconds * 1e3:.1f} ms", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
