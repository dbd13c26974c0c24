// admin_socket.h - crfsd's admin socket: a UNIX stream socket on which root
// and the members of the admin group ask the running crfsd to show or
// change what it serves (admin_request.h; docs/crfsd.md, "The admin
// socket") without a restart.
//
// Who may: the kernel's word for the peer, taken at accept before a byte
// is read -- SO_PEERCRED (uid, gid, pid) and SO_PEERGROUPS (supplementary
// groups): uid 0, or the admin group as the primary or a supplementary
// group. Anyone else gets one refusal answer and the connection closed (the
// server audits it). The socket file is root's, mode 0660, group the admin
// group (0600 without one), in a directory it does not create.
//
// Non-blocking, in crfsd's event loop: a peer that sends slowly costs one
// fd and its buffer until kDeadlineMs; at most kMaxConnections at once
// (more are closed at accept). An answer to an allowed peer is written
// with a send timeout (kSendTimeoutMs): admins are trusted not to stall
// crfsd for longer.
//
// Owned by the Server; event loop thread only.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "proto/status.h"

namespace crfs::server {

// Writes all of `text` to the stream socket `fd` (EINTR retried, no
// SIGPIPE); false if the peer went away or a send timeout passed. Used by
// both ends of the admin socket (crfsd here, crfsctl).
bool SendAll(int fd, std::string_view text);

class AdminSocket {
 public:
  static constexpr size_t kMaxConnections = 8;
  static constexpr int64_t kDeadlineMs = 10000;
  static constexpr int kSendTimeoutMs = 2000;

  struct Peer {
    uint32_t uid = 0, gid = 0;
    int32_t pid = 0;
    std::string command;  // /proc/PID/comm when accepted (informational: the pid may be reused)
    bool allowed = false;
  };
  // A connection whose request is complete (the peer shut down its write
  // side), or that was refused: answer it with Answer().
  struct Ready {
    int fd = -1;
    Peer peer;
    std::string bytes;  // the request (empty for a refused peer)
    bool too_large = false;
  };

  // Binds `path` (an existing socket there is replaced only if nobody
  // answers on it: a live crfsd's socket is not taken) and adds it to
  // `epoll_fd`. `group`: the admin group, if any.
  static Result<std::unique_ptr<AdminSocket>> Open(const std::string& path, std::optional<gid_t> group, int epoll_fd);
  ~AdminSocket();  // closes every connection, unlinks the socket
  AdminSocket(const AdminSocket&) = delete;
  AdminSocket& operator=(const AdminSocket&) = delete;

  bool Owns(int fd) const { return fd == listen_fd_ || conns_.count(fd) != 0; }
  // An epoll event on one of Owns()'s fds: accepts, reads. Connections
  // that are ready to be answered are appended to *ready.
  void OnEvent(int fd, int64_t now_ms, std::vector<Ready>* ready);
  // Writes `answer` (one JSON object and a newline) and closes `fd`.
  void Answer(int fd, const nlohmann::json& answer);
  // Closes connections past their deadline.
  void Expire(int64_t now_ms);
  const std::string& path() const { return path_; }

 private:
  AdminSocket(std::string path, std::optional<gid_t> group, int epoll_fd)
      : path_(std::move(path)), group_(group), epoll_fd_(epoll_fd) {}
  void Accept(int64_t now_ms, std::vector<Ready>* ready);
  void Close(int fd);
  struct Conn {
    Peer peer;
    std::string bytes;
    int64_t deadline = 0;
  };
  std::string path_;
  std::optional<gid_t> group_;
  int epoll_fd_ = -1;
  int listen_fd_ = -1;
  std::map<int, Conn> conns_;
};

}  // namespace crfs::server
