// The shared loss kernels (losses_impl.hpp) built for this translation unit's instruction set,
// with the vector softmax_xent / bce_with_logits of losses_simd.hpp in place of the scalar loops.
#include "losses/losses_impl.hpp"
#include "losses/losses_simd.hpp"

namespace pydl::avx2 {
void fill_losses(LossTable& t) {
  fill_loss_table(t);
  fill_loss_table_simd(t);
}
}  // namespace pydl::avx2
