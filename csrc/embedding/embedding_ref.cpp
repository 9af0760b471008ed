// The shared embedding kernels (embedding_impl.hpp) built for this translation unit's instruction
// set.
#include "embedding/embedding_impl.hpp"

namespace pydl::generic {
void fill_embedding(EmbeddingTable& t) { fill_embedding_table(t); }
}  // namespace pydl::generic
