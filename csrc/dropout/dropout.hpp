// dropout: kernel table (entries are added by the family's implementation work).
#pragma once

#include <cstdint>

#include "common/fill.hpp"

namespace pydl {

struct DropoutTable {
  int placeholder_ = 0;
};

PYDL_DECLARE_FILL(fill_dropout, DropoutTable)

}  // namespace pydl
