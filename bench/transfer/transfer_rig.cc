#include "bench/transfer/transfer_rig.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/kv_transfer/grpc/grpc_transport.h"
#include "common/kv_transfer/kv_send_stream.h"
#include "common/kv_transfer/shm/shared_memory_region.h"
#include "common/kv_transfer/shm/shm_send_transport.h"
#include "common/kv_transfer/tcp/tcp_send_transport.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"

namespace pdserve::bench {

namespace kvt = kv_transfer;

kv::KvLayout SmolLm2KvLayout(kernels::KvDtype dtype) {
  kv::KvLayout layout;
  layout.n_layers = 30;
  layout.n_kv_heads = 3;
  layout.head_dim = 64;
  layout.block_size = 16;
  layout.dtype = dtype;
  return layout;
}

ReceiverRig::ReceiverRig(kvt::KvReservationTable& table, kv::KvBlockPool& pool)
    : service_(table, pool), tcp_(table, pool) {}

absl::StatusOr<std::unique_ptr<ReceiverRig>> ReceiverRig::Start(kvt::KvReservationTable& table,
                                                                kv::KvBlockPool& pool,
                                                                std::string shm_name) {
  std::unique_ptr<ReceiverRig> rig(new ReceiverRig(table, pool));
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&rig->service_);
  builder.SetMaxReceiveMessageSize(256 << 20);  // as the decode worker (chunks of a few MB)
  rig->server_ = builder.BuildAndStart();
  if (rig->server_ == nullptr || port == 0) {
    return absl::UnavailableError("cannot start the KvReceiver gRPC service on 127.0.0.1");
  }
  rig->address_ = absl::StrCat("127.0.0.1:", port);
  if (absl::Status s = rig->tcp_.Start("127.0.0.1", 0); !s.ok()) return s;
  if (!shm_name.empty()) {
    absl::StatusOr<std::string> boot_id = kvt::HostBootId();
    if (!boot_id.ok()) return boot_id.status();
    rig->offers_.push_back({std::string(kvt::kShmTransport), std::move(shm_name), *boot_id});
  }
  rig->offers_.push_back(
      {std::string(kvt::kTcpTransport), absl::StrCat(":", rig->tcp_.port()), ""});
  rig->offers_.push_back({std::string(kvt::kGrpcTransport), "", ""});
  return rig;
}

ReceiverRig::~ReceiverRig() {
  tcp_.Stop();
  if (server_ != nullptr) server_->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(1)));
}

SenderRig::SenderRig() {
  for (kvt::TransportMode mode :
       {kvt::TransportMode::kGrpc, kvt::TransportMode::kShm, kvt::TransportMode::kTcp}) {
    auto transports = std::make_unique<kvt::KvSendTransports>(mode);
    transports->Add(std::make_unique<kvt::GrpcKvSendTransport>(channels_));
    transports->Add(std::make_unique<kvt::ShmKvSendTransport>(channels_));
    transports->Add(std::make_unique<kvt::TcpKvSendTransport>(channels_));
    by_name_.emplace_back(kvt::TransportModeName(mode), std::move(transports));
  }
}

absl::StatusOr<SendTiming> SenderRig::Send(const std::string& transport,
                                           const kv::KvBlockPool& pool,
                                           const kv::BlockTable& table,
                                           const kvt::Handoff& handoff,
                                           absl::Span<const int32_t> prompt, int chunk_blocks,
                                           int32_t first_token) {
  auto it = std::find_if(by_name_.begin(), by_name_.end(),
                         [&](const auto& entry) { return entry.first == transport; });
  if (it == by_name_.end()) {
    return absl::InvalidArgumentError(absl::StrCat("unknown transport '", transport, "'"));
  }
  const int64_t n_prompt = static_cast<int64_t>(prompt.size());
  if (absl::Status s = kvt::CheckHandoff(handoff, pool.layout(), "", n_prompt); !s.ok()) return s;
  const kvt::SenderHello hello{handoff.request_id, handoff.transfer_token, "", pool.layout(), "",
                               n_prompt};
  SendTiming timing;
  const absl::Time open_start = absl::Now();
  absl::StatusOr<std::unique_ptr<kvt::KvSendStream>> stream =
      it->second->Open(handoff, hello, absl::Now() + absl::Seconds(60));
  if (!stream.ok()) return stream.status();
  if ((*stream)->transport() != transport) {
    return absl::InternalError(absl::StrCat("asked for ", transport, ", opened ",
                                            (*stream)->transport()));
  }
  timing.open_seconds = absl::ToDoubleSeconds(absl::Now() - open_start);
  kvt::KvHandoffSender sender(pool, handoff, prompt, *std::move(stream));
  const int64_t n_blocks = static_cast<int64_t>(handoff.target_blocks.size());
  const absl::Time start = absl::Now();
  for (int64_t first = 0; first < n_blocks; first += chunk_blocks) {
    if (absl::Status s = sender.SendBlocks(table, first, std::min(n_blocks, first + chunk_blocks));
        !s.ok()) {
      return s;
    }
  }
  absl::StatusOr<kvt::TransferReport> report = sender.Finish(first_token);
  timing.seconds = absl::ToDoubleSeconds(absl::Now() - start);
  if (!report.ok()) return report.status();
  if (report->blocks != n_blocks || report->transport != transport) {
    return absl::InternalError(absl::StrCat("the report says ", report->blocks, " blocks over ",
                                            report->transport, ", expected ", n_blocks, " over ",
                                            transport));
  }
  timing.bytes = report->bytes;
  return timing;
}

void FillPattern(absl::Span<uint8_t> bytes, uint64_t seed) {
  uint64_t state = seed;
  size_t i = 0;
  for (; i + 8 <= bytes.size(); i += 8) {
    state += 0x9e3779b97f4a7c15ULL;
    uint64_t z = state;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    std::memcpy(bytes.data() + i, &z, 8);
  }
  for (; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(seed + i);
}

double Percentile(std::vector<double> values, double q) {
  std::sort(values.begin(), values.end());
  const size_t rank = static_cast<size_t>(std::ceil(q * static_cast<double>(values.size())));
  return values[std::clamp<size_t>(rank, 1, values.size()) - 1];
}

double Mean(absl::Span<const double> values) {
  return std::accumulate(values.begin(), values.end(), 0.0) / static_cast<double>(values.size());
}

absl::StatusOr<std::vector<std::string>> ParseTransportList(const std::string& flag,
                                                            const std::string& text) {
  std::vector<std::string> names;
  for (absl::string_view item : absl::StrSplit(text, ',')) {
    const std::string name(item);
    if (!kvt::IsTransportName(name)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", flag, ": '", name, "' is not one of grpc, shm, tcp"));
    }
    if (std::find(names.begin(), names.end(), name) != names.end()) {
      return absl::InvalidArgumentError(absl::StrCat("--", flag, ": '", name, "' twice"));
    }
    names.push_back(name);
  }
  return names;
}

}  // namespace pdserve::bench
