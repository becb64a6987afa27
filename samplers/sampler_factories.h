// Constructors of the concrete samplers, used by the registry (scheduler.cpp).
#pragma once
#include <memory>

#include "samplers/scheduler.h"

namespace lumen::samplers {

std::unique_ptr<Scheduler> make_ddim(const ScheduleConfig& config);
std::unique_ptr<Scheduler> make_euler(const ScheduleConfig& config);
std::unique_ptr<Scheduler> make_euler_ancestral(const ScheduleConfig& config);
std::unique_ptr<Scheduler> make_lcm(const ScheduleConfig& config);
std::unique_ptr<Scheduler> make_pndm(const ScheduleConfig& config);
std::unique_ptr<Scheduler> make_dpm_solver_multistep(const ScheduleConfig& config);
std::unique_ptr<Scheduler> make_unipc(const ScheduleConfig& config);

}  // namespace lumen::samplers
