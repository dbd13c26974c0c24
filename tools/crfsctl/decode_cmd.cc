// crfsctl decode: print a capture (CRFS frames back to back, as they travel
// inside TLS) in snoop form. A frame whose header decodes but whose payload
// does not is printed with its error and skipped; a header that does not
// decode ends the run (the framing is lost). Exit 1 if anything was wrong.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "proto/codec.h"
#include "proto/snoop.h"
#include "tools/crfsctl/commands.h"

namespace crfs::ctl {
namespace {

bool ReadAll(std::FILE* f, std::vector<uint8_t>* out) {
  uint8_t buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) out->insert(out->end(), buf, buf + n);
  return !std::ferror(f);
}

}  // namespace

int DecodeCommand(Args args) {
  if (args.size() > 1) {
    std::fputs("usage: crfsctl decode [FILE|-]\n", stderr);
    return 2;
  }
  std::string path = args.empty() ? "-" : std::string(args[0]);
  std::FILE* f = path == "-" ? stdin : std::fopen(path.c_str(), "rb");
  if (!f) {
    std::fprintf(stderr, "crfsctl decode: %s: %s\n", path.c_str(), std::strerror(errno));
    return 1;
  }
  std::vector<uint8_t> buf;
  bool read_ok = ReadAll(f, &buf);
  if (f != stdin) std::fclose(f);
  if (!read_ok) {
    std::fprintf(stderr, "crfsctl decode: %s: read error\n", path.c_str());
    return 1;
  }

  proto::Bytes rest(buf);
  size_t frames = 0;
  size_t bad = 0;
  while (!rest.empty()) {
    const size_t at = buf.size() - rest.size();
    auto h = proto::DecodeHeader(rest);
    if (!h.ok()) {
      std::printf("error at byte %zu: %s\n", at, h.status().ToString().c_str());
      bad++;
      break;
    }
    if (rest.size() - proto::kHeaderSize < h->bytes) {
      std::printf("%serror at byte %zu: frame truncated: %u payload bytes announced, %zu present\n",
                  proto::FormatHeader(*h).c_str(), at, h->bytes, rest.size() - proto::kHeaderSize);
      bad++;
      break;
    }
    auto frame = proto::DecodePayload(*h, rest.subspan(proto::kHeaderSize, h->bytes));
    if (frame.ok()) {
      std::fputs(proto::FormatFrame(*frame, h->bytes).c_str(), stdout);
    } else {
      std::printf("%s  error: %s\n", proto::FormatHeader(*h).c_str(), frame.status().ToString().c_str());
      bad++;
    }
    std::fputs("\n", stdout);
    frames++;
    rest = rest.subspan(proto::kHeaderSize + h->bytes);
  }
  std::fprintf(stderr, "crfsctl decode: %zu frames, %zu bytes, %zu errors\n", frames, buf.size(), bad);
  return bad == 0 ? 0 : 1;
}

}  // namespace crfs::ctl
