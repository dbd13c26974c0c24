#include "proto/frame_stream.h"

#include <gtest/gtest.h>

#include "tests/unit/sample_frames.h"

namespace crfs::proto {
namespace {

std::vector<uint8_t> Stream() {
  std::vector<uint8_t> s;
  for (const Frame& f : testing::SampleFrames()) {
    auto b = EncodeFrame(f);
    EXPECT_TRUE(b.ok());
    s.insert(s.end(), b->begin(), b->end());
  }
  return s;
}

// Feeds `stream` in pieces of at most `chunk` bytes, never more than wanted.
std::vector<Frame> Feed(FrameAssembler& a, const std::vector<uint8_t>& stream, size_t chunk, Status* err) {
  std::vector<Frame> out;
  size_t pos = 0;
  while (pos < stream.size()) {
    size_t n = std::min({chunk, a.Wanted(), stream.size() - pos});
    *err = a.Push(Bytes(stream).subspan(pos, n));
    if (!err->ok()) return out;
    pos += n;
    auto f = a.Pop();
    if (!f.ok()) {
      *err = f.status();
      return out;
    }
    if (*f) out.push_back(std::move(**f));
  }
  return out;
}

TEST(FrameAssembler, ReassemblesFramesFromAnyChunking) {
  const auto stream = Stream();
  const auto want = testing::SampleFrames();
  for (size_t chunk : {1, 7, 24, 100, 4096, 1 << 20}) {
    FrameAssembler a;
    Status err;
    auto got = Feed(a, stream, chunk, &err);
    ASSERT_TRUE(err.ok()) << err.ToString();
    ASSERT_EQ(got.size(), want.size()) << "chunk " << chunk;
    for (size_t i = 0; i < want.size(); i++) EXPECT_TRUE(got[i] == want[i]);
    EXPECT_EQ(a.frames(), want.size());
  }
}

TEST(FrameAssembler, RefusesAnOversizedFrameBeforeBufferingIt) {
  FrameAssembler a(4096);
  auto big = EncodeFrame(Frame{1, 0, Snapshot{std::string(200, 's')}});
  ASSERT_TRUE(big.ok());
  (*big)[12] = 0;  // bytes = 0x10000 + ...: past the 4096 limit
  (*big)[13] = 0;
  (*big)[14] = 1;
  Status s = a.Push(Bytes(*big).subspan(0, kHeaderSize));
  EXPECT_EQ(s.code(), Code::kTooLarge);
  EXPECT_EQ(a.Push(Bytes(*big).subspan(0, 1)).code(), Code::kTooLarge) << "stays broken";
  EXPECT_FALSE(a.Pop().ok());
}

TEST(FrameAssembler, BadPayloadBreaksTheStream) {
  auto b = EncodeFrame(Frame{1, 0, Hello{}});
  ASSERT_TRUE(b.ok());
  (*b)[kHeaderSize] ^= 1;  // magic
  FrameAssembler a;
  Status err;
  auto got = Feed(a, *b, 1000, &err);
  EXPECT_TRUE(got.empty());
  EXPECT_EQ(err.code(), Code::kBadValue);
  ASSERT_TRUE(a.header().has_value());
  EXPECT_EQ(a.header()->id, 1u);
}

TEST(FrameAssembler, NeverAsksForBytesOfTheNextFrame) {
  FrameAssembler a;
  EXPECT_EQ(a.Wanted(), kHeaderSize);
  auto b = EncodeFrame(Frame{9, 0, Ping{}});
  ASSERT_TRUE(b.ok());
  ASSERT_TRUE(a.Push(*b).ok());
  auto f = a.Pop();
  ASSERT_TRUE(f.ok() && f->has_value());
  EXPECT_EQ(a.Wanted(), kHeaderSize);
  EXPECT_EQ(a.Push(std::vector<uint8_t>(kHeaderSize + 1, 0)).code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace crfs::proto
