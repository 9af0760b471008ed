// The shared loss kernels (losses_impl.hpp) built for this translation unit's instruction set.
#include "losses/losses_impl.hpp"

namespace pydl::avx2 {
void fill_losses(LossTable& t) { fill_loss_table(t); }
}  // namespace pydl::avx2
