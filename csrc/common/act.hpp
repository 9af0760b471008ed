// Activation identifiers shared by the activation kernels and the GEMM epilogue.
#pragma once

namespace pydl {

enum class Act : int {
  kNone = 0,
  kRelu,
  kLeakyRelu,
  kElu,
  kSigmoid,
  kTanh,
  kGelu,      // x * Phi(x), Phi the standard normal CDF (PyTorch's approximate="none")
  kGeluTanh,  // PyTorch's approximate="tanh": 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
  kSilu,      // x * sigmoid(x)
};

// Whether the backward of `act` reads the forward INPUT x rather than the output y. GELU and SiLU
// are not invertible from y alone (both are non-monotonic for x < 0), so theirs take x.
constexpr bool act_backward_reads_input(Act act) {
  return act == Act::kGelu || act == Act::kGeluTanh || act == Act::kSilu;
}

}  // namespace pydl
