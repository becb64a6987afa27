#include "samplers/parameterization.h"

#include "error.h"

namespace lumen::samplers {

void refuse_epsilon_at_zero_snr(const ScheduleConfig& config, const torch::Tensor& alphas_cumprod,
                                const std::vector<int64_t>& timesteps, const std::string& who) {
  if (config.prediction != Prediction::Epsilon) return;
  for (int64_t t : timesteps)
    if (alphas_cumprod[t].item<double>() <= 0)
      throw Error(who, "zero terminal SNR needs v-prediction: timestep " + std::to_string(t) +
                           " has alpha_cumprod 0, where an epsilon-prediction model cannot recover x0 "
                           "(use prediction_type v_prediction, or a schedule without rescale_betas_zero_snr)");
}

}  // namespace lumen::samplers
