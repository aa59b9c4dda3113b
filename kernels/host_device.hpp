// MOESIM_HD marks small inline functions that the CPU references and the CUDA kernels
// share (scalar GELU, the counter-based RNG), so both sides compute the same formula.
#pragma once

#if defined(__CUDACC__)
#define MOESIM_HD __host__ __device__
#else
#define MOESIM_HD
#endif
