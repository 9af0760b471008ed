// The shared embedding kernels (embedding_impl.hpp) built for this translation unit's instruction
// set.
#include "embedding/embedding_impl.hpp"

namespace pydl::avx512 {
void fill_embedding(EmbeddingTable& t) { fill_embedding_table(t); }
}  // namespace pydl::avx512
