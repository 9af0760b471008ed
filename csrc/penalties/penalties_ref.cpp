#include "penalties/penalties.hpp"

namespace pydl::generic {
void fill_penalties(PenaltyTable&) {}
}  // namespace pydl::generic
