#pragma once
// The decode worker's end of the "tcp" KV transport (docs/kv-transfer.md): a listening socket,
// an accept thread, and one thread per connection serving batches into the reservations of a
// KvReservationTable (tcp_kv_connection.h says what each batch does and how a connection
// ends). Connections are independent: one that breaks mid-batch fails only the reservation its
// batch was for.
//
// Threads: Start spawns the accept thread; each accepted connection gets its own thread, at most
// `max_connections` at once (beyond it a connection is answered ResourceExhausted and closed).
// Finished connection threads are joined by the accept thread; Stop joins the rest. Every wait
// of every thread polls a wake descriptor that Stop signals, so Stop returns promptly even with
// connections open mid-batch (their reservations fail: Unavailable).

#include <list>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "common/kv/kv_block_pool.h"
#include "common/kv_transfer/reservation_table.h"
#include "common/kv_transfer/tcp/tcp_kv_connection.h"
#include "common/kv_transfer/tcp/tcp_socket.h"

namespace pdserve::kv_transfer {

struct TcpKvReceiverOptions {
  int max_connections = 256;
  TcpKvConnectionOptions connection;
};

class TcpKvReceiver {
 public:
  // `table` and `pool` (the host pool the table's reservations hold blocks of) outlive the
  // receiver.
  TcpKvReceiver(KvReservationTable& table, kv::KvBlockPool& pool,
                TcpKvReceiverOptions options = {});
  ~TcpKvReceiver();  // Stop()
  TcpKvReceiver(const TcpKvReceiver&) = delete;
  TcpKvReceiver& operator=(const TcpKvReceiver&) = delete;

  // Listens on `host` ("" or "0.0.0.0": every IPv4 interface) and `port` (0: an ephemeral one)
  // and starts accepting. Once per receiver: FailedPrecondition when started (or stopped)
  // before; Unavailable / InvalidArgument naming host and port when it cannot listen.
  absl::Status Start(const std::string& host, int port);
  // Closes the listener and every connection and joins every thread. Idempotent; thread-safe
  // (a second caller returns once the first has finished).
  void Stop() ABSL_LOCKS_EXCLUDED(stop_mu_, mu_);

  int port() const;           // the bound port; 0 before Start
  int n_connections() const;  // connections being served now

 private:
  struct Connection {
    Fd fd;
    std::string peer;
    std::thread thread;
    bool done = false;  // guarded by mu_: its thread has nothing left to do but return
  };

  void AcceptLoop();
  void Serve(Connection* connection);
  // Joins the threads of finished connections and forgets them.
  void ReapFinished() ABSL_LOCKS_EXCLUDED(mu_);

  KvReservationTable& table_;
  kv::KvBlockPool& pool_;
  const TcpKvReceiverOptions options_;
  WakeFd wake_;  // signalled once, by Stop
  Fd listener_;  // set by Start; used by the accept thread only; closed by Stop after joining it
  std::thread accept_thread_;

  absl::Mutex stop_mu_ ABSL_ACQUIRED_BEFORE(mu_);  // held through Stop
  mutable absl::Mutex mu_;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  int port_ ABSL_GUARDED_BY(mu_) = 0;
  int n_active_ ABSL_GUARDED_BY(mu_) = 0;
  std::list<std::unique_ptr<Connection>> connections_ ABSL_GUARDED_BY(mu_);
};

}  // namespace pdserve::kv_transfer
