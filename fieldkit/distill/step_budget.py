"""How many steps a field conversion takes when the user names none: as many as fit in about
four minutes on a 2-core CPU, so that a cheap pair is not stopped short for an expensive one's
sake (tensorf-vm -> mlp: -1.86 dB at 900 steps, -0.81 at 2400; voxels -> tensorf-vm: -1.70 at
900, -0.77 at 1800)."""
from __future__ import annotations

# Seconds per distillation step of each teacher -> student pair at default settings on the
# 2-core reference CPU: 60 steps after 10 of warm-up, two threads, nothing else running, all 25
# pairs in one session on the default scene's teachers. A table, not a model: a teacher's cost
# and a student's did not add up (fits of either form missed single pairs by up to 30-34%,
# because how many samples a student evaluates depends on the teacher's occupancy). Whole default
# runs then cost from 6% less to 52% more a step than these timings (every voxel student 29-52%
# more), which put six pairs over five minutes: see the README's matrix.
STEP_SECONDS = {
    ("mlp", "mlp"): 0.058, ("mlp", "hashgrid"): 0.095, ("mlp", "tensorf-vm"): 0.050,
    ("mlp", "tensorf-cp"): 0.101, ("mlp", "voxels"): 0.123,
    ("hashgrid", "mlp"): 0.126, ("hashgrid", "hashgrid"): 0.364, ("hashgrid", "tensorf-vm"): 0.165,
    ("hashgrid", "tensorf-cp"): 0.210, ("hashgrid", "voxels"): 0.194,
    ("tensorf-vm", "mlp"): 0.062, ("tensorf-vm", "hashgrid"): 0.130, ("tensorf-vm", "tensorf-vm"): 0.117,
    ("tensorf-vm", "tensorf-cp"): 0.093, ("tensorf-vm", "voxels"): 0.147,
    ("tensorf-cp", "mlp"): 0.051, ("tensorf-cp", "hashgrid"): 0.102, ("tensorf-cp", "tensorf-vm"): 0.057,
    ("tensorf-cp", "tensorf-cp"): 0.091, ("tensorf-cp", "voxels"): 0.113,
    ("voxels", "mlp"): 0.085, ("voxels", "hashgrid"): 0.212, ("voxels", "tensorf-vm"): 0.125,
    ("voxels", "tensorf-cp"): 0.198, ("voxels", "voxels"): 0.182,
}
BUDGET_SECONDS = 240.0
# past the most steps, the cheapest pairs gain little and should stay quick; MLP students, the
# slowest learners, still gain past 3000 steps (tensorf-cp -> mlp: -1.47 dB at 3000, -1.33 at 4700)
FEWEST_STEPS, MOST_STEPS = 900, 5000
# a splat teacher (outside the table: it renders its views first) and a hash-grid student, 4096
# rays a step, pixels alone: -0.96 dB against the splats' test PSNR at 1200 steps, -0.93 at 1800
SPLAT_TEACHER_STEPS = 1800


def step_seconds(teacher: str, student: str) -> float:
    """Measured seconds per step of `teacher` -> `student` architectures on the reference CPU."""
    return STEP_SECONDS[teacher, student]


def default_steps(teacher: str, student: str) -> int:
    """Steps (a multiple of 100) for `teacher` -> `student` architectures at default settings."""
    if (teacher, student) not in STEP_SECONDS:
        return SPLAT_TEACHER_STEPS
    steps = int(BUDGET_SECONDS / step_seconds(teacher, student)) // 100 * 100
    return min(max(steps, FEWEST_STEPS), MOST_STEPS)
