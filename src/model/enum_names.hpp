// The names of the model enums in JSON files, one table per enum, shared by the
// reader (choice), the writer and to_string so the three cannot drift apart.
#pragma once

#include <string_view>
#include <utility>

#include "src/model/model_spec.hpp"

namespace moesim::names {

inline constexpr std::pair<std::string_view, Positions> kPositions[] = {
    {"sinusoidal", Positions::sinusoidal}, {"learned", Positions::learned}, {"rotary", Positions::rotary}};
inline constexpr std::pair<std::string_view, Norm> kNorms[] = {
    {"layernorm", Norm::layernorm}, {"gain_only_layernorm", Norm::gain_only_layernorm}, {"rmsnorm", Norm::rmsnorm}};
inline constexpr std::pair<std::string_view, Activation> kActivations[] = {
    {"gelu", Activation::gelu}, {"relu", Activation::relu}, {"swiglu", Activation::swiglu}};
inline constexpr std::pair<std::string_view, DType> kDTypes[] = {
    {"fp32", DType::fp32}, {"fp16", DType::fp16}, {"bf16", DType::bf16}};
inline constexpr std::pair<std::string_view, SecondExpertPolicy> kSecondExpertPolicies[] = {
    {"all", SecondExpertPolicy::all}, {"sampling", SecondExpertPolicy::sampling}, {"random", SecondExpertPolicy::random}};
inline constexpr std::pair<std::string_view, RouterScore> kRouterScores[] = {
    {"softmax", RouterScore::softmax}, {"sigmoid", RouterScore::sigmoid}};
inline constexpr std::pair<std::string_view, CapacityRounding> kCapacityRoundings[] = {
    {"per_choice", CapacityRounding::per_choice}, {"total", CapacityRounding::total}};
inline constexpr std::pair<std::string_view, QkNorm> kQkNorms[] = {
    {"none", QkNorm::none}, {"per_head", QkNorm::per_head}, {"full", QkNorm::full}};

}  // namespace moesim::names
