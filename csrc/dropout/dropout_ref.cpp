#include "dropout/dropout.hpp"

namespace pydl::generic {
void fill_dropout(DropoutTable&) {}
}  // namespace pydl::generic
