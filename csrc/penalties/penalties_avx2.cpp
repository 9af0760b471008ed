#include "penalties/penalties.hpp"

namespace pydl::avx2 {
void fill_penalties(PenaltyTable&) {}
}  // namespace pydl::avx2
