#include "proto/wire_reader.h"

#include <gtest/gtest.h>

namespace crfs::proto {
namespace {

TEST(Reader, ReadsLittleEndianAndConsumes) {
  const uint8_t buf[] = {0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f};
  Reader r(buf);
  uint8_t a;
  uint16_t b;
  uint32_t c;
  uint64_t d;
  ASSERT_TRUE(r.U8(&a, "a").ok());
  ASSERT_TRUE(r.Le16(&b, "b").ok());
  ASSERT_TRUE(r.Le32(&c, "c").ok());
  ASSERT_TRUE(r.Le64(&d, "d").ok());
  EXPECT_EQ(a, 0x01);
  EXPECT_EQ(b, 0x0302);
  EXPECT_EQ(c, 0x07060504u);
  EXPECT_EQ(d, 0x0f0e0d0c0b0a0908ull);
  EXPECT_TRUE(r.empty());
  EXPECT_TRUE(r.ExpectEnd("all").ok());
}

TEST(Reader, RefusesToReadPastTheEndAndStaysPut) {
  const uint8_t buf[] = {1, 2, 3};
  Reader r(buf);
  uint32_t v = 0xdead;
  Status s = r.Le32(&v, "the field");
  EXPECT_EQ(s.code(), Code::kTruncated);
  EXPECT_NE(s.message().find("the field"), std::string::npos) << s.ToString();
  EXPECT_EQ(v, 0xdeadu);
  EXPECT_EQ(r.position(), 0u);
  uint16_t w;
  ASSERT_TRUE(r.Le16(&w, "w").ok());
  EXPECT_EQ(r.remaining(), 1u);
  EXPECT_EQ(r.ExpectEnd("x").code(), Code::kLengthMismatch);
}

TEST(Reader, SubReaderCannotReachPastItsSlice) {
  const uint8_t buf[] = {1, 2, 3, 4, 5, 6};
  Reader r(buf);
  Reader sub(Bytes{});
  ASSERT_TRUE(r.Sub(2, &sub, "sub").ok());
  uint32_t v;
  EXPECT_EQ(sub.Le32(&v, "v").code(), Code::kTruncated);
  EXPECT_EQ(r.remaining(), 4u);
  EXPECT_EQ(r.Sub(5, &sub, "sub").code(), Code::kTruncated);
}

TEST(Reader, HugeLengthsDoNotWrap) {
  const uint8_t buf[] = {1, 2};
  Reader r(buf);
  Bytes out;
  EXPECT_EQ(r.Take(SIZE_MAX, &out, "huge").code(), Code::kTruncated);
  std::string s;
  EXPECT_EQ(r.TakeString(SIZE_MAX - 1, &s, "huge").code(), Code::kTruncated);
}

TEST(Writer, WritesLittleEndianAndLatchesOverflow) {
  Writer w(6);
  w.Le32(0x04030201);
  w.Le16(0x0605);
  ASSERT_TRUE(w.status().ok());
  EXPECT_EQ(w.bytes(), (std::vector<uint8_t>{1, 2, 3, 4, 5, 6}));
  w.U8(7);
  EXPECT_EQ(w.status().code(), Code::kTooLarge);
  EXPECT_EQ(w.size(), 6u);
}

TEST(Writer, PatchOutsideTheBufferIsAnError) {
  Writer w(64);
  w.Le32(0);
  w.PatchLe32(0, 0xaabbccdd);
  ASSERT_TRUE(w.status().ok());
  EXPECT_EQ(w.bytes()[0], 0xdd);
  w.PatchLe32(2, 1);
  EXPECT_FALSE(w.status().ok());
}

}  // namespace
}  // namespace crfs::proto
