#include "penalties/penalties.hpp"

namespace pydl::avx512 {
void fill_penalties(PenaltyTable&) {}
}  // namespace pydl::avx512
