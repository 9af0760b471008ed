// Declares a family's table-filling function in each ISA namespace (see common/dispatch.hpp).
#pragma once

#define PYDL_DECLARE_FILL(fn, Table) \
  namespace generic {                \
  void fn(Table&);                   \
  }                                  \
  namespace avx2 {                   \
  void fn(Table&);                   \
  }                                  \
  namespace avx512 {                 \
  void fn(Table&);                   \
  }
