// Writes the committed seed corpora of the message fuzz targets (corpus/<target>/ for
// generate_request, worker_request, kv_chunks, registry, tokenizer, chat_template; the GGUF
// seeds come from make_gguf_corpus.py): valid messages of each kind and invalid ones, one defect
// each, in the input format each target reads (fuzz_targets.h, fuzz_input.h). Deterministic.
// Usage: make_fuzz_corpus OUT_DIR (normally tests/fuzz/corpus).
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "common/kv_transfer/grpc/handoff_proto.h"
#include "common/kv_transfer/kv_blocks.h"
#include "common/rpc/proto_convert.h"
#include "kv_transfer.pb.h"
#include "router.pb.h"
#include "tests/fuzz/fuzz_input.h"
#include "tests/fuzz/fuzz_targets.h"
#include "worker.pb.h"

namespace pdserve::fuzz {
namespace {

namespace fs = std::filesystem;

class CorpusWriter {
 public:
  explicit CorpusWriter(fs::path root) : root_(std::move(root)) {}
  void Write(const std::string& target, const std::string& name, const std::string& bytes) {
    fs::create_directories(root_ / target);
    std::ofstream out(root_ / target / name, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    ++n_written_;
  }
  int n_written() const { return n_written_; }

 private:
  fs::path root_;
  int n_written_ = 0;
};

std::vector<int32_t> Ids(int n, int first = 1) {
  std::vector<int32_t> ids;
  for (int i = 0; i < n; ++i) ids.push_back(first + 7 * i % 500);
  return ids;
}

void GenerateRequests(CorpusWriter& w) {
  auto text = [](const std::string& prompt, int max_tokens) {
    v1::GenerateRequest r;
    r.set_text(prompt);
    r.set_max_tokens(max_tokens);
    return r;
  };
  auto put = [&](const std::string& name, const v1::GenerateRequest& r) {
    w.Write("generate_request", name, r.SerializeAsString());
  };
  put("text", text("Once upon a time", 16));
  put("unicode", text("h\xc3\xa9llo \xe4\xb8\x96\xe7\x95\x8c \xf0\x9f\x99\x82", 4));
  v1::GenerateRequest full = text("Lily and Ben went to the park.", 32);
  full.mutable_sampling()->set_temperature(0.8f);
  full.mutable_sampling()->set_top_k(40);
  full.mutable_sampling()->set_top_p(0.9f);
  full.mutable_sampling()->set_repetition_penalty(1.1f);
  full.mutable_sampling()->set_seed(7);
  full.add_stop("\n");
  full.add_stop("The end");
  full.set_ignore_eos(true);
  full.set_request_id("client-req-1");
  put("text_sampling_stop_id", full);
  v1::GenerateRequest chat;
  chat.set_max_tokens(8);
  auto* system = chat.mutable_chat()->add_messages();
  system->set_role("system");
  system->set_content("You tell short stories.");
  auto* user = chat.mutable_chat()->add_messages();
  user->set_role("user");
  user->set_content("A story about a cat.");
  put("chat", chat);
  put("bad_max_tokens", text("hello", 0));
  put("bad_empty_text", text("", 4));
  put("bad_no_prompt", v1::GenerateRequest());
  put("bad_past_context", text("Once upon a time", 100000));
  v1::GenerateRequest bad_sampling = text("hi", 4);
  bad_sampling.mutable_sampling()->set_temperature(-1);
  put("bad_temperature", bad_sampling);
  v1::GenerateRequest bad_stop = text("hi", 4);
  bad_stop.add_stop("");
  put("bad_empty_stop", bad_stop);
  v1::GenerateRequest bad_id = text("hi", 4);
  bad_id.set_request_id("has space");
  put("bad_request_id", bad_id);
  v1::GenerateRequest no_messages;
  no_messages.mutable_chat();
  no_messages.set_max_tokens(4);
  put("bad_chat_no_messages", no_messages);
  // Invalid UTF-8 cannot be set through the API: a field of bytes in the same number.
  std::string invalid_utf8 = text("x", 4).SerializeAsString();
  invalid_utf8[2] = '\xff';
  w.Write("generate_request", "bad_utf8_text", invalid_utf8);
}

v1::KvLayoutInfo FuzzLayoutProto() {
  v1::KvLayoutInfo layout = rpc::KvLayoutToProto(FuzzLayout());
  layout.set_model_fingerprint(std::string(kFuzzFingerprint));
  return layout;
}

void WorkerRequests(CorpusWriter& w) {
  auto put = [&](const std::string& name, bool decode, const google::protobuf::Message& m) {
    w.Write("worker_request", name, std::string(1, decode ? '\1' : '\0') + m.SerializeAsString());
  };
  v1::PrefillRequest prefill;
  prefill.set_request_id("req-1");
  for (int32_t id : Ids(10)) prefill.add_prompt_ids(id);
  prefill.mutable_sampling()->set_temperature(0.5f);
  prefill.set_decode_address("127.0.0.1:5000");
  v1::KvHandoff* handoff = prefill.mutable_handoff();
  handoff->set_transfer_token(std::string("0123456789abcdef"));
  for (int32_t block : {3, 9, 4}) handoff->add_block_ids(block);  // 10 tokens: 3 blocks of 4
  *handoff->mutable_layout() = FuzzLayoutProto();
  auto* grpc = handoff->add_transports();
  grpc->set_transport("grpc");
  auto* tcp = handoff->add_transports();
  tcp->set_transport("tcp");
  tcp->set_endpoint(":6000");
  auto* shm = handoff->add_transports();
  shm->set_transport("shm");
  shm->set_endpoint("/pdserve-kv-1");
  shm->set_host_id("boot-id");
  handoff->set_lease_idle_ms(2000);
  handoff->set_lease_max_ms(10000);
  handoff->set_lease_expiry_unix_ms(1'700'000'000'000);
  put("prefill", false, prefill);
  auto variant = [&](const std::string& name, const std::function<void(v1::PrefillRequest&)>& f) {
    v1::PrefillRequest r = prefill;
    f(r);
    put(name, false, r);
  };
  variant("prefill_v6_address", [](auto& r) { r.set_decode_address("[::1]:5000"); });
  variant("bad_prefill_no_handoff", [](auto& r) { r.clear_handoff(); });
  variant("bad_prefill_blocks", [](auto& r) { r.mutable_handoff()->add_block_ids(5); });
  variant("bad_prefill_dtype",
          [](auto& r) { r.mutable_handoff()->mutable_layout()->set_dtype("f64"); });
  variant("bad_prefill_version",
          [](auto& r) { r.mutable_handoff()->mutable_layout()->set_version(9); });
  variant("bad_prefill_model", [](auto& r) {
    r.mutable_handoff()->mutable_layout()->set_model_fingerprint("another");
  });
  variant("bad_prefill_token", [](auto& r) { r.mutable_handoff()->set_transfer_token("short"); });
  variant("bad_prefill_vocab", [](auto& r) { r.set_prompt_ids(2, 600); });
  variant("bad_prefill_empty_id", [](auto& r) { r.clear_request_id(); });
  variant("bad_prefill_no_prompt", [](auto& r) { r.clear_prompt_ids(); });

  v1::DecodeRequest decode;
  decode.set_request_id("req-2");
  for (int32_t id : Ids(10)) decode.add_prompt_ids(id);
  decode.set_max_tokens(20);
  decode.mutable_sampling()->set_top_k(5);
  decode.mutable_sampling()->set_seed(3);
  put("decode", true, decode);
  auto decode_variant = [&](const std::string& name,
                            const std::function<void(v1::DecodeRequest&)>& f) {
    v1::DecodeRequest r = decode;
    f(r);
    put(name, true, r);
  };
  decode_variant("decode_ignore_eos", [](auto& r) { r.set_ignore_eos(true); });
  decode_variant("bad_decode_past_context", [](auto& r) { r.set_max_tokens(100); });
  decode_variant("bad_decode_max_tokens", [](auto& r) { r.set_max_tokens(0); });
  decode_variant("bad_decode_negative_id", [](auto& r) { r.set_prompt_ids(0, -1); });
  decode_variant("bad_decode_top_p", [](auto& r) { r.mutable_sampling()->set_top_p(0); });
  decode_variant("bad_decode_request_id", [](auto& r) { r.set_request_id(std::string(200, 'a')); });
}

// A KvChunk stream for the kv_chunks target: flags, prompt length byte, chunks as pieces.
std::string KvStream(uint8_t flags, int64_t n_prompt_tokens,
                     const std::vector<v1::KvChunk>& chunks) {
  std::string out;
  out.push_back(static_cast<char>(flags));
  out.push_back(static_cast<char>(n_prompt_tokens - 1));
  for (const v1::KvChunk& chunk : chunks) AppendPiece(out, chunk.SerializeAsString());
  return out;
}

void AddBlock(v1::KvChunk& chunk, int index, int n_tokens) {
  v1::KvBlock* block = chunk.add_blocks();
  block->set_index(index);
  block->set_n_tokens(n_tokens);
  std::string data(FuzzLayout().BlockBytes(), '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 31 + index);
  block->set_checksum(kv_transfer::BlockChecksum(
      absl::Span<const uint8_t>(reinterpret_cast<const uint8_t*>(data.data()), data.size())));
  block->set_data(std::move(data));
}

// A well-formed stream of a 10-token prompt (blocks of 4, 4 and 2 tokens) over `transport`.
std::vector<v1::KvChunk> GoodStream(const std::string& transport) {
  kv_transfer::SenderHello hello;
  hello.request_id = std::string(kFuzzRequestId);
  hello.transfer_token = "replaced-by-the-target";
  hello.transport = transport;
  hello.layout = FuzzLayout();
  hello.model_fingerprint = std::string(kFuzzFingerprint);
  hello.n_prompt_tokens = 10;
  std::vector<v1::KvChunk> chunks(2);
  kv_transfer::SetHello(hello, chunks[0]);
  AddBlock(chunks[0], 1, 4);
  AddBlock(chunks[0], 0, 4);
  AddBlock(chunks[1], 2, 2);
  chunks[1].set_last(true);
  chunks[1].set_first_token(42);
  return chunks;
}

void KvChunks(CorpusWriter& w) {
  const uint8_t real = kKvChunksRealToken;
  auto put = [&](const std::string& name, uint8_t flags, std::vector<v1::KvChunk> chunks,
                 int64_t n_prompt_tokens = 10) {
    w.Write("kv_chunks", name, KvStream(flags, n_prompt_tokens, chunks));
  };
  put("grpc", real, GoodStream("grpc"));
  put("grpc_shuffled", real | kKvChunksShuffle | kKvChunksGrpcOnly, GoodStream("grpc"));
  put("shm", real, GoodStream("shm"));
  put("wrong_token", 0, GoodStream("grpc"));
  auto variant = [&](const std::string& name, uint8_t flags,
                     const std::function<void(std::vector<v1::KvChunk>&)>& f) {
    std::vector<v1::KvChunk> chunks = GoodStream("grpc");
    f(chunks);
    put(name, flags, chunks);
  };
  put("bad_no_token", 0, [] {
    std::vector<v1::KvChunk> c = GoodStream("grpc");
    c[0].clear_transfer_token();
    return c;
  }());
  variant("bad_no_layout", real, [](auto& c) { c[0].clear_layout(); });
  variant("bad_block_size", real, [](auto& c) { c[0].mutable_layout()->set_block_size(8); });
  variant("bad_model", real, [](auto& c) { c[0].mutable_layout()->set_model_fingerprint("x"); });
  variant("bad_n_prompt", real, [](auto& c) { c[0].set_n_prompt_tokens(11); });
  variant("bad_request_id", real, [](auto& c) { c[1].set_request_id("another"); });
  variant("bad_after_last", real, [](auto& c) { c.push_back(c[1]); });
  variant("bad_repeated_block", real, [](auto& c) { *c[1].add_blocks() = c[0].blocks(0); });
  variant("bad_index", real, [](auto& c) { c[1].mutable_blocks(0)->set_index(3); });
  variant("bad_n_tokens", real, [](auto& c) { c[1].mutable_blocks(0)->set_n_tokens(4); });
  variant("bad_checksum", real, [](auto& c) { c[1].mutable_blocks(0)->set_checksum(1); });
  variant("fixed_checksum", real | kKvChunksFixChecksums,
          [](auto& c) { c[1].mutable_blocks(0)->set_checksum(1); });
  variant("bad_short_data", real | kKvChunksFixChecksums,
          [](auto& c) { c[1].mutable_blocks(0)->mutable_data()->resize(10); });
  variant("bad_early_last", real, [](auto& c) { c[0].set_last(true); });
  variant("bad_no_last", real, [](auto& c) { c[1].set_last(false); });
  variant("bad_transport", real, [](auto& c) { c[0].set_transport("rdma"); });
  variant("bad_tcp_blocks", real, [](auto& c) { c[0].set_transport("tcp"); });
  std::vector<v1::KvChunk> shm_refused = GoodStream("shm");
  put("bad_shm_not_accepted", real | kKvChunksGrpcOnly, shm_refused);
  std::vector<v1::KvChunk> one_token = GoodStream("grpc");
  one_token[0].set_n_prompt_tokens(1);
  one_token[0].clear_blocks();
  AddBlock(one_token[0], 0, 1);
  one_token[1].clear_blocks();
  put("one_token", real, one_token, 1);
}

void Registry(CorpusWriter& w) {
  auto reg = [](const std::string& id, v1::WorkerRole role, int block_size,
                const std::string& fingerprint) {
    v1::RegisterWorkerRequest r;
    r.set_worker_id(id);
    r.set_role(role);
    r.set_address("127.0.0.1:7" + std::to_string(id.size()) + "01");
    r.mutable_load()->set_free_kv_blocks(100);
    r.mutable_load()->set_total_kv_blocks(128);
    *r.mutable_kv_layout() = FuzzLayoutProto();
    r.mutable_kv_layout()->set_block_size(block_size);
    r.mutable_kv_layout()->set_model_fingerprint(fingerprint);
    r.set_model_name("fuzz.gguf");
    return r;
  };
  const std::string fp(kFuzzFingerprint);
  auto op_register = [](std::string& out, const v1::RegisterWorkerRequest& r) {
    out.push_back('\0');
    AppendPiece(out, r.SerializeAsString());
  };
  auto op_heartbeat = [](std::string& out, const std::string& id, int queue) {
    v1::HeartbeatRequest h;
    h.set_worker_id(id);
    h.mutable_load()->set_queue_length(queue);
    out.push_back('\1');
    AppendPiece(out, h.SerializeAsString());
  };
  auto op_clock = [](std::string& out, uint8_t seconds) {
    out.push_back('\2');
    out.push_back(static_cast<char>(seconds));
  };
  auto op_dispatch = [](std::string& out, const std::string& id, uint8_t blocks) {
    out.push_back('\3');
    AppendPiece(out, id);
    out.push_back(static_cast<char>(blocks));
  };
  std::string cluster;
  op_register(cluster, reg("prefill-0", v1::WORKER_ROLE_PREFILL, 4, fp));
  op_register(cluster, reg("decode-0", v1::WORKER_ROLE_DECODE, 4, fp));
  op_dispatch(cluster, "decode-0", 3);
  op_heartbeat(cluster, "prefill-0", 2);
  op_clock(cluster, 2);
  op_heartbeat(cluster, "decode-0", 0);
  op_register(cluster, reg("decode-1", v1::WORKER_ROLE_DECODE, 8, fp));  // refused: block size
  op_clock(cluster, 5);
  op_register(cluster, reg("decode-1", v1::WORKER_ROLE_DECODE, 8, fp));  // others stale: joins
  op_heartbeat(cluster, "decode-0", 1);
  op_heartbeat(cluster, "unknown", 1);
  w.Write("registry", "cluster", cluster);
  auto single = [&](const std::string& name, const v1::RegisterWorkerRequest& r) {
    std::string out;
    op_register(out, r);
    w.Write("registry", name, out);
  };
  single("bad_model", reg("p", v1::WORKER_ROLE_PREFILL, 4, "another"));
  single("bad_role", reg("p", v1::WORKER_ROLE_UNSPECIFIED, 4, fp));
  single("bad_unknown_role", reg("p", static_cast<v1::WorkerRole>(7), 4, fp));
  single("bad_decode_block_size", reg("d", v1::WORKER_ROLE_DECODE, 0, fp));
  v1::RegisterWorkerRequest no_address = reg("p", v1::WORKER_ROLE_PREFILL, 4, fp);
  no_address.clear_address();
  single("bad_no_address", no_address);
  v1::RegisterWorkerRequest heads = reg("p", v1::WORKER_ROLE_PREFILL, 4, fp);
  heads.mutable_kv_layout()->set_n_kv_heads(9);
  single("bad_kv_heads", heads);
  single("bad_no_id", reg("", v1::WORKER_ROLE_PREFILL, 4, fp));
}

void Tokenizer(CorpusWriter& w) {
  auto put = [&](const std::string& name, uint8_t selector, const std::string& text) {
    w.Write("tokenizer", name, std::string(1, static_cast<char>(selector)) + text);
  };
  const std::string story =
      "Once upon a time, there was a little girl named Lily. She liked to play.";
  const std::string unicode = "Caf\xc3\xa9 \xe4\xb8\x96\xe7\x95\x8c \xf0\x9f\x99\x82 na\xc3\xafve";
  const std::string chatml = "<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n";
  for (const uint8_t bpe : {0, 1}) {
    const std::string which = bpe ? "bpe_" : "sp_";
    put(which + "story", bpe | 2, story);
    put(which + "unicode", bpe, unicode);
    put(which + "chatml_special", bpe | 4, chatml);
    put(which + "chatml_text", bpe | 2, chatml);
    put(which + "numbers_spaces", bpe, "  12345  67.89\t\n\n x   y ");
    put(which + "bad_utf8", bpe, "ok \xff\xfe bad \xc3");
    put(which + "ids_after_bos", bpe | 8, std::string("\x01\x00\x10\x01\xff\x01\x03\x00", 8));
  }
  put("empty", 0, "");
}

void ChatTemplates(CorpusWriter& w) {
  auto messages = [](const std::vector<std::pair<std::string, std::string>>& list) {
    std::string out;
    for (const auto& [role, content] : list) {
      AppendPiece(out, role);
      AppendPiece(out, content);
    }
    return out;
  };
  auto with_template = [](uint8_t flags, const std::string& source, const std::string& rest) {
    std::string out(1, static_cast<char>(flags | 1));
    AppendPiece(out, source);
    return out + rest;
  };
  const std::string user = messages({{"user", "Hi there"}});
  const std::string conversation =
      messages({{"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello!"}, {"user", "?"}});
  w.Write("chat_template", "real_user", std::string(1, '\2') + user);
  w.Write("chat_template", "real_conversation", std::string(1, '\0') + conversation);
  w.Write("chat_template", "real_no_messages", std::string(1, '\2'));
  const std::string plain =
      "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
      "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
      "{{ '<|im_start|>assistant\\n' }}{% endif %}";
  w.Write("chat_template", "plain_chatml", with_template(2, plain, conversation));
  const std::string trimmed =
      "{%- for message in messages -%}\n  {{- '<|im_start|>' + message[\"role\"] + '\\n' + "
      "message['content'] + '<|im_end|>' + '\\n' -}}\n{%- endfor %}\n{% if add_generation_prompt "
      "%}{{ '<|im_start|>assistant\\n' }}{% endif %}\n";
  w.Write("chat_template", "trimmed_chatml", with_template(2, trimmed, user));
  const std::string system_default =
      "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
      "{{ '<|im_start|>system\\nYou are a pirate \\'arr\\'.<|im_end|>\\n' }}{% endif %}"
      "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
      "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
  w.Write("chat_template", "default_system", with_template(0, system_default, user));
  w.Write("chat_template", "bad_unterminated_tag", with_template(0, "{% for m in messages", user));
  w.Write("chat_template", "bad_unterminated_string", with_template(0, "{{ 'abc }}", user));
  w.Write("chat_template", "bad_unknown", with_template(0, "{{ bos_token }}{# c #}hello", user));
  w.Write("chat_template", "bad_empty", with_template(0, "", user));
}

}  // namespace
}  // namespace pdserve::fuzz

int main(int argc, char** argv) {
  if (argc != 2 || std::string(argv[1]) == "--help") {
    std::printf("Usage: make_fuzz_corpus OUT_DIR\nWrites the message fuzz targets' seed corpora "
                "(OUT_DIR/<target>/), normally into tests/fuzz/corpus.\n");
    return argc == 2 ? 0 : 2;
  }
  pdserve::fuzz::CorpusWriter writer(argv[1]);
  pdserve::fuzz::GenerateRequests(writer);
  pdserve::fuzz::WorkerRequests(writer);
  pdserve::fuzz::KvChunks(writer);
  pdserve::fuzz::Registry(writer);
  pdserve::fuzz::Tokenizer(writer);
  pdserve::fuzz::ChatTemplates(writer);
  std::printf("make_fuzz_corpus: wrote %d seed inputs under %s\n", writer.n_written(), argv[1]);
  return 0;
}
