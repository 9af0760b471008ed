// The shared pooling kernels (pool_impl.hpp) built for this translation unit's instruction set.
#include "pool/pool_impl.hpp"

namespace pydl::generic {
void fill_pool(PoolTable& t) { fill_pool_table(t); }
}  // namespace pydl::generic
