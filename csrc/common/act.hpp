// Activation identifiers shared by the activation kernels and the GEMM epilogue.
#pragma once

namespace pydl {

enum class Act : int { kNone = 0, kRelu, kLeakyRelu, kElu, kSigmoid, kTanh };

}  // namespace pydl
