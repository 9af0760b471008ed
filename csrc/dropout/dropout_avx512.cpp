#include "dropout/dropout.hpp"

namespace pydl::avx512 {
void fill_dropout(DropoutTable&) {}
}  // namespace pydl::avx512
