#include "dropout/dropout.hpp"

namespace pydl::avx2 {
void fill_dropout(DropoutTable&) {}
}  // namespace pydl::avx2
