// The public request as the router takes it: GenerateRequest wire bytes through
// ParseGenerateRequest and ValidateGenerateRequest against stories260K's RouterModel (given a
// ChatML template, so that chat prompts are rendered and encoded too). Whatever the router
// accepts, the workers' request contract must accept as well.
#include <memory>

#include "common/request/request_contract.h"
#include "google/protobuf/stubs/logging.h"
#include "router/request_validation.h"
#include "router/router_model.h"
#include "tests/fuzz/fuzz_targets.h"

namespace pdserve::fuzz {
namespace {

constexpr absl::string_view kChatMl =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}";

router::RouterModel* model = nullptr;

}  // namespace

bool InitGenerateRequestFuzz() {
  // Protobuf logs every string field with invalid UTF-8 it refuses: noise here.
  google::protobuf::SetLogHandler(nullptr);
  const std::string bin = SharedModelPath("stories260K.bin");
  const std::string tok = SharedModelPath("tok512.bin");
  if (!FileExists(bin) || !FileExists(tok)) {
    std::fprintf(stderr, "generate_request fuzz: skipped: %s or %s is missing\n", bin.c_str(),
                 tok.c_str());
    return false;
  }
  absl::StatusOr<router::RouterModel> loaded = router::LoadRouterModel(bin, tok);
  if (!loaded.ok()) {
    std::fprintf(stderr, "generate_request fuzz: cannot load %s: %s\n", bin.c_str(),
                 loaded.status().ToString().c_str());
    std::abort();  // the files are there: a load failure is a bug, not a skip
  }
  loaded->chat_template = tokenizer::ChatTemplate::FromSource(kChatMl);
  if (!loaded->chat_template.ok()) std::abort();
  model = new router::RouterModel(*std::move(loaded));  // lives for the process
  return true;
}

int GenerateRequestFuzz(const uint8_t* data, size_t size) {
  const std::string wire(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<v1::GenerateRequest> request = router::ParseGenerateRequest(wire);
  if (!request.ok()) {
    PDSERVE_FUZZ_CHECK(absl::IsInvalidArgument(request.status()), request.status().ToString());
    return 0;
  }
  (void)request::CheckClientRequestId(request->request_id());
  absl::StatusOr<router::ValidatedRequest> validated =
      router::ValidateGenerateRequest(*request, *model);
  if (!validated.ok()) return 0;

  const router::ValidatedRequest& v = *validated;
  const int32_t vocab = model->tokenizer->vocab_size();
  PDSERVE_FUZZ_CHECK(!v.prompt_ids.empty(), "accepted an empty prompt");
  PDSERVE_FUZZ_CHECK(v.max_tokens >= 1, "accepted max_tokens < 1");
  for (const std::string& stop : v.stop) PDSERVE_FUZZ_CHECK(!stop.empty(), "empty stop string");
  const request::SequenceRequest sequence{"fuzz", v.prompt_ids, v.max_tokens, &v.sampling};
  const absl::Status contract =
      request::CheckSequenceRequest(sequence, {model->context_length, vocab});
  PDSERVE_FUZZ_CHECK(contract.ok(),
                     "the router accepted what the worker contract refuses: " +
                         contract.ToString());
  return 0;
}

}  // namespace pdserve::fuzz

PDSERVE_FUZZ_TARGET(pdserve::fuzz::InitGenerateRequestFuzz, pdserve::fuzz::GenerateRequestFuzz)
