// admin_socket.cc - the admin socket's connections (admin_socket.h).
#include "server/admin_socket.h"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "server/admin_request.h"
#include "server/log.h"

namespace crfs::server {

namespace {

Status Sys(const std::string& what) { return Status(Code::kIo, what + ": " + std::strerror(errno)); }

bool FillAddress(const std::string& path, sockaddr_un* a) {
  std::memset(a, 0, sizeof(*a));
  a->sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(a->sun_path)) return false;
  std::memcpy(a->sun_path, path.data(), path.size());
  return true;
}

std::string CommandOf(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/comm");
  std::string comm;
  std::getline(in, comm);
  return comm.substr(0, 64);
}

}  // namespace

Result<std::unique_ptr<AdminSocket>> AdminSocket::Open(const std::string& path, std::optional<gid_t> group,
                                                       int epoll_fd) {
  sockaddr_un addr;
  if (!FillAddress(path, &addr)) return Status(Code::kInvalidArgument, "admin socket " + path + ": path too long");
  // A socket file already there: a live crfsd's (it answers) is not taken;
  // a stale one (a crash) is replaced. Anything else is not crfsd's to remove.
  struct stat st;
  if (lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return Status(Code::kInvalidArgument, "admin socket " + path + ": something other than a socket is there");
    }
    const int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (probe < 0) return Sys("socket");
    const bool live = connect(probe, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    close(probe);
    if (live) return Status(Code::kInvalidArgument, "admin socket " + path + " is in use by another crfsd");
    if (unlink(path.c_str()) != 0) return Sys("unlink stale admin socket " + path);
  }
  std::unique_ptr<AdminSocket> s(new AdminSocket(path, group, epoll_fd));
  s->listen_fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (s->listen_fd_ < 0) return Sys("socket");
  // Created 0600, then opened up to the group: never wider than meant.
  const mode_t old = umask(0177);
  const int bound = bind(s->listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  umask(old);
  if (bound != 0) return Sys("bind admin socket " + path);
  if (group) {
    if (chown(path.c_str(), 0, *group) != 0 || chmod(path.c_str(), 0660) != 0) {
      return Sys("admin socket " + path + ": chown/chmod");
    }
  }
  if (listen(s->listen_fd_, 16) != 0) return Sys("listen admin socket " + path);
  struct epoll_event ev {};
  ev.events = EPOLLIN;
  ev.data.fd = s->listen_fd_;
  if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, s->listen_fd_, &ev) != 0) return Sys("epoll_ctl");
  return s;
}

AdminSocket::~AdminSocket() {
  while (!conns_.empty()) Close(conns_.begin()->first);
  if (listen_fd_ >= 0) {
    close(listen_fd_);
    unlink(path_.c_str());
  }
}

void AdminSocket::Close(int fd) {
  epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
  close(fd);
  conns_.erase(fd);
}

void AdminSocket::Accept(int64_t now_ms, std::vector<Ready>* ready) {
  for (;;) {
    const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;  // EAGAIN, or a peer gone before we got to it
    if (conns_.size() >= kMaxConnections) {
      close(fd);
      Log(LogLevel::kWarning, "admin socket: %zu connections open, one more closed", conns_.size());
      continue;
    }
    Conn c;
    struct ucred cred {};
    socklen_t len = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
      close(fd);
      continue;
    }
    c.peer.uid = cred.uid;
    c.peer.gid = cred.gid;
    c.peer.pid = cred.pid;
    c.peer.command = CommandOf(cred.pid);
    c.peer.allowed = cred.uid == 0 || (group_ && cred.gid == *group_);
    if (!c.peer.allowed && group_) {
      gid_t groups[256];
      socklen_t glen = sizeof(groups);
      if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &glen) == 0) {
        for (size_t i = 0; i < glen / sizeof(gid_t); i++) c.peer.allowed |= groups[i] == *group_;
      }
    }
    c.deadline = now_ms + kDeadlineMs;
    const Peer peer = c.peer;
    conns_.emplace(fd, std::move(c));
    if (!peer.allowed) {
      // Nothing of a refused peer's is read.
      ready->push_back(Ready{fd, peer, {}, false});
      continue;
    }
    struct epoll_event ev {};
    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.fd = fd;
    if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) Close(fd);
  }
}

void AdminSocket::OnEvent(int fd, int64_t now_ms, std::vector<Ready>* ready) {
  if (fd == listen_fd_) return Accept(now_ms, ready);
  auto it = conns_.find(fd);
  if (it == conns_.end()) return;
  Conn& c = it->second;
  char buf[65536];
  for (;;) {
    const ssize_t n = read(fd, buf, sizeof(buf));
    if (n > 0) {
      if (c.bytes.size() + static_cast<size_t>(n) > kMaxRequestBytes) {
        epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
        ready->push_back(Ready{fd, c.peer, {}, true});
        return;
      }
      c.bytes.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n == 0) {  // the peer's end of the request
      epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
      ready->push_back(Ready{fd, c.peer, std::move(c.bytes), false});
      return;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) Close(fd);
    return;
  }
}

void AdminSocket::Answer(int fd, const nlohmann::json& answer) {
  auto it = conns_.find(fd);
  if (it == conns_.end()) return;
  const std::string text = answer.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  if (it->second.peer.allowed) {
    // Blocking, bounded: an answer can be larger than the socket buffer.
    const int flags = fcntl(fd, F_GETFL);
    if (flags >= 0) (void)fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
    struct timeval tv {
      kSendTimeoutMs / 1000, (kSendTimeoutMs % 1000) * 1000
    };
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  }
  (void)SendAll(fd, text);  // a peer that went away gets nothing
  Close(fd);
}

bool SendAll(int fd, std::string_view text) {
  size_t off = 0;
  while (off < text.size()) {
    const ssize_t n = send(fd, text.data() + off, text.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

void AdminSocket::Expire(int64_t now_ms) {
  std::vector<int> late;
  for (const auto& [fd, c] : conns_) {
    if (now_ms >= c.deadline) late.push_back(fd);
  }
  for (int fd : late) {
    Log(LogLevel::kWarning, "admin socket: uid %u pid %d sent no whole request within %lld ms; closed",
        conns_[fd].peer.uid, conns_[fd].peer.pid, static_cast<long long>(kDeadlineMs));
    Close(fd);
  }
}

}  // namespace crfs::server
