// param_name.h - names for table-driven GoogleTest cases: a case's
// description with everything but letters and digits turned into '_', so
// each case shows up in ctest by what it tests.
#pragma once

#include <cctype>
#include <string>

namespace crfs::testing {

inline std::string ParamName(std::string s) {
  for (char& ch : s) {
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  }
  return s;
}

}  // namespace crfs::testing
